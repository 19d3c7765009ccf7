//! Simplified sliding sync (MSC4186, `POST /_matrix/client/unstable/org.matrix.simplified_msc3575/sync`):
//! `http` drives it with raw requests, `sdk` with matrix-sdk-ui's `SyncService`,
//! `RoomListService` and `Timeline`, as Element X does, and `flows` with Element X's everyday
//! flows (invites, leaves, pagination, edits, reactions, threads). One test binary of modules (each
//! test binary links on its own).

// matrix-sdk's futures (a spawned `Client::sync`) are deeper than the default limit.
#![recursion_limit = "256"]

mod flows;
mod http;
mod sdk;
