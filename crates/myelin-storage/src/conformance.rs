//! Backend-independent conformance tests for the storage traits (feature `conformance`).
//!
//! Each public `async fn` checks one area against a fresh, empty store and panics on failure.
//! [`storage_conformance_tests!`](crate::storage_conformance_tests) turns them into one
//! `#[tokio::test]` each for a backend.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use myelin_core::{Pdu, StreamPos};
use ruma::{
    OwnedDeviceId, OwnedEventId, OwnedRoomAliasId, OwnedRoomId, OwnedUserId, RoomVersionId,
};
use serde_json::{json, Value};

use crate::{
    BackfilledEvent, Direction, MembershipChange, MembershipRecord, NewEvent, NewOutlier, NewRoom,
    NewSession, NewState, NewUser, OutboxContent, OutboxEntry, OutlierStatus, Persisted,
    ReceiptRecord, SnapshotId, StateKey, StateMap, Storage, TimelineSpan, TokenOwner, UserRecord,
};

/// Expands to one `#[tokio::test]` per conformance test.
///
/// `$make` is evaluated once per test and must yield `(store, guard)`: `store` implements
/// [`Storage`] and `guard` is kept alive until the test ends (e.g. a temporary directory; use
/// `()` if there is nothing to keep). The calling crate needs `tokio` with the `macros` and
/// `rt-multi-thread` features.
#[macro_export]
macro_rules! storage_conformance_tests {
    ($make:expr) => {
        $crate::storage_conformance_tests!(@by_ref $make;
            users_and_sessions,
            guests_are_flagged_and_upgraded_once,
            locked_and_suspended_accounts,
            custom_profile_fields,
            threepid_sessions_validate_once_and_in_time,
            threepids_bind_to_one_account,
            registration_binds_its_address_or_creates_nothing,
            threepid_id_server_bindings_are_remembered,
            sso_logins_map_to_one_account,
            search_finds_words_by_prefix_in_the_rooms_named,
            search_forgets_redacted_and_rejected_events_and_indexes_backfill,
            devices,
            events_state_and_snapshots,
            snapshot_chains,
            current_state_follows_snapshot,
            redactions,
            room_events_pagination,
            latest_of_types_walks_each_room,
            latest_events_of_many_rooms,
            rooms_with_new_events,
            memberships,
            aliases,
            room_directory,
            txn_ids,
            account_data,
            receipts,
            presence,
            filters,
            reports,
            failed_writes_roll_back,
            outliers_stay_out_of_the_timeline,
            federation_outbox,
            received_transactions,
            resolved_current_state_replaces_current_state,
            outside_memberships,
            backfilled_events_go_before_the_timeline,
            events_near_a_timestamp,
            device_keys_and_claims,
            cross_signing_keys,
            device_list_changes,
            to_device_messages,
            key_uploads_and_claims_in_detail,
            cross_signing_keys_per_user_and_kind,
            device_list_changes_share_the_stream,
            remote_device_lists_are_cached_and_patched,
            remote_device_lists_go_when_no_room_is_shared,
            device_list_update_ids_chain_per_user,
            to_device_batches_and_late_devices,
            to_device_transactions_run_once,
            deleting_devices_removes_their_keys,
            backup_versions_are_numbered_per_user,
            backup_keys_keep_the_better_key,
            backup_keys_by_room_and_session,
            deactivation_removes_backups,
            relations_are_indexed_and_paged,
            thread_summaries_edits_and_references,
            related_parents_across_rooms,
            latest_events_related_marks_related_events,
            threads_are_listed_by_latest_reply,
            redaction_rejection_and_backfill_in_the_relations_index,
            media_uploaded_at_once,
            media_created_then_uploaded,
            media_thumbnails,
            appservice_transactions_are_kept_until_accepted,
            appservice_devices_are_made_without_tokens,
            appservice_network_directories,
            remote_media_cache,
            notification_counts_follow_read_receipts,
            notification_counts_survive_folding,
            notifications_of_many_members,
            pushers_and_their_queues,
            media_is_counted_and_deleted,
            remote_media_is_listed_and_deleted,
            media_quarantine,
        );
        $crate::storage_conformance_tests!(@by_arc $make;
            stream_positions_increase_under_concurrency,
            concurrent_writers_do_not_collide,
            readers_never_see_a_gap_in_positions,
        );
    };
    (@by_ref $make:expr; $($name:ident),* $(,)?) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $name() {
                let (store, _guard) = $make;
                $crate::conformance::$name(&store).await;
            }
        )*
    };
    (@by_arc $make:expr; $($name:ident),* $(,)?) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $name() {
                let (store, _guard) = $make;
                $crate::conformance::$name(::std::sync::Arc::new(store)).await;
            }
        )*
    };
}

mod accounts;
mod appservice;
mod backup;
mod external_ids;
mod federation;
mod keys;
mod keys_in_detail;
mod keys_lifecycle;
mod media;
mod media_ops;
mod push;
mod relations;
mod remote_devices;
mod rooms;
mod search;
mod state;
mod threepids;
mod user_data;
mod writes;
pub use accounts::*;
pub use appservice::*;
pub use backup::{
    backup_keys_by_room_and_session, backup_keys_keep_the_better_key,
    backup_versions_are_numbered_per_user, deactivation_removes_backups,
};
pub use external_ids::*;
pub use federation::*;
pub use keys::*;
pub use keys_in_detail::*;
pub use keys_lifecycle::*;
pub use media::{
    media_created_then_uploaded, media_thumbnails, media_uploaded_at_once, remote_media_cache,
};
pub use media_ops::*;
pub use push::{
    notification_counts_follow_read_receipts, notification_counts_survive_folding,
    notifications_of_many_members, pushers_and_their_queues,
};
pub use relations::*;
pub use remote_devices::*;
pub use rooms::*;
pub use search::*;
pub use state::*;
pub use threepids::*;
pub use user_data::*;
pub use writes::*;

// ---- fixtures ---------------------------------------------------------------------------------

pub fn user(id: &str) -> OwnedUserId {
    OwnedUserId::try_from(id).expect("valid user ID")
}

pub fn room(id: &str) -> OwnedRoomId {
    OwnedRoomId::try_from(id).expect("valid room ID")
}

pub fn event(id: &str) -> OwnedEventId {
    OwnedEventId::try_from(id).expect("valid event ID")
}

pub fn device(id: &str) -> OwnedDeviceId {
    OwnedDeviceId::from(id)
}

fn alias(id: &str) -> OwnedRoomAliasId {
    OwnedRoomAliasId::try_from(id).expect("valid alias")
}

fn key(kind: &str, state_key: &str) -> StateKey {
    (kind.to_owned(), state_key.to_owned())
}

/// Builds a PDU from hand-written JSON.
#[allow(clippy::too_many_arguments)]
pub fn pdu(
    event_id: &str,
    room_id: &str,
    sender: &str,
    kind: &str,
    state_key: Option<&str>,
    content: Value,
    depth: u64,
    prev_events: &[OwnedEventId],
) -> Pdu {
    let mut json = json!({
        "type": kind,
        "sender": sender,
        "room_id": room_id,
        "origin_server_ts": 1_700_000_000_000u64 + depth,
        "content": content,
        "depth": depth,
        "prev_events": prev_events,
        "auth_events": [],
    });
    if let Some(state_key) = state_key {
        json["state_key"] = json!(state_key);
    }
    let raw = serde_json::value::to_raw_value(&json).expect("serializable");
    Pdu::from_json(event(event_id), raw).expect("valid PDU")
}

/// A linear room: every event extends the previous one and moves the current state.
pub struct TestRoom {
    pub room_id: OwnedRoomId,
    pub creator: OwnedUserId,
    /// The state snapshot after the last event.
    pub snapshot: SnapshotId,
    /// The expected current state.
    pub state: StateMap,
    pub last: OwnedEventId,
    pub depth: u64,
    tag: String,
    counter: u32,
}

impl TestRoom {
    /// Creates the room (create event and the creator's join). Event IDs start with `$<tag>`.
    pub async fn create(store: &dyn Storage, room_id: &str, creator: &str, tag: &str) -> TestRoom {
        let create_id = event(&format!("${tag}create"));
        let create = pdu(
            create_id.as_str(),
            room_id,
            creator,
            "m.room.create",
            Some(""),
            json!({"room_version": "10"}),
            1,
            &[],
        );
        let persisted = store
            .persist_event(NewEvent {
                pdu: create,
                room: Some(NewRoom {
                    room_id: room(room_id),
                    version: RoomVersionId::V10,
                    creator: user(creator),
                    created_ms: 1_700_000_000_000,
                }),
                state: NewState::Changed {
                    base: None,
                    changes: vec![(key("m.room.create", ""), create_id.clone())],
                },
                updates_current_state: true,
                membership: None,
                txn: None,
                redaction: None,
                forward_extremities: vec![create_id.clone()],
                resolved_current_state: None,
                destinations: Vec::new(),
                push_actions: Vec::new(),
            })
            .await
            .expect("persist create event");
        let mut test_room = TestRoom {
            room_id: room(room_id),
            creator: user(creator),
            snapshot: persisted.state_snapshot,
            state: StateMap::from([(key("m.room.create", ""), create_id.clone())]),
            last: create_id,
            depth: 1,
            tag: tag.to_owned(),
            counter: 0,
        };
        test_room.member(store, creator, creator, "join").await;
        test_room
    }

    /// A fresh event ID in this room.
    pub fn next_id(&mut self) -> String {
        self.counter += 1;
        format!("${}{}", self.tag, self.counter)
    }

    /// The next event in the chain (not persisted).
    pub fn next_pdu(
        &mut self,
        sender: &str,
        kind: &str,
        state_key: Option<&str>,
        content: Value,
    ) -> Pdu {
        let id = self.next_id();
        pdu(
            &id,
            self.room_id.as_str(),
            sender,
            kind,
            state_key,
            content,
            self.depth + 1,
            std::slice::from_ref(&self.last),
        )
    }

    /// The `NewEvent` that appends `pdu` linearly (state events change their key).
    pub fn new_event(&self, pdu: Pdu) -> NewEvent {
        let state = match &pdu.state_key {
            Some(state_key) => NewState::Changed {
                base: Some(self.snapshot),
                changes: vec![(
                    (pdu.kind.to_string(), state_key.clone()),
                    pdu.event_id.clone(),
                )],
            },
            None => NewState::Same(self.snapshot),
        };
        NewEvent {
            forward_extremities: vec![pdu.event_id.clone()],
            resolved_current_state: None,
            destinations: Vec::new(),
            push_actions: Vec::new(),
            pdu,
            room: None,
            state,
            updates_current_state: true,
            membership: None,
            txn: None,
            redaction: None,
        }
    }

    /// Persists an event built by [`TestRoom::new_event`] and advances the chain.
    pub async fn append(&mut self, store: &dyn Storage, new_event: NewEvent) -> Persisted {
        let pdu = new_event.pdu.clone();
        let persisted = store.persist_event(new_event).await.expect("persist event");
        if let Some(state_key) = &pdu.state_key {
            self.state.insert(
                (pdu.kind.to_string(), state_key.clone()),
                pdu.event_id.clone(),
            );
        }
        self.snapshot = persisted.state_snapshot;
        self.last = pdu.event_id;
        self.depth += 1;
        persisted
    }

    pub async fn state_event(
        &mut self,
        store: &dyn Storage,
        kind: &str,
        state_key: &str,
        content: Value,
    ) -> (OwnedEventId, Persisted) {
        let pdu = self.next_pdu(
            self.creator.clone().as_str(),
            kind,
            Some(state_key),
            content,
        );
        let id = pdu.event_id.clone();
        let persisted = self.append(store, self.new_event(pdu)).await;
        (id, persisted)
    }

    pub async fn message(
        &mut self,
        store: &dyn Storage,
        sender: &str,
        body: &str,
    ) -> (OwnedEventId, Persisted) {
        let pdu = self.next_pdu(
            sender,
            "m.room.message",
            None,
            json!({"msgtype": "m.text", "body": body}),
        );
        let id = pdu.event_id.clone();
        let persisted = self.append(store, self.new_event(pdu)).await;
        (id, persisted)
    }

    /// An `m.room.member` event by `sender` about `target`, with its membership change.
    pub async fn member(
        &mut self,
        store: &dyn Storage,
        sender: &str,
        target: &str,
        membership: &str,
    ) -> (OwnedEventId, Persisted) {
        let pdu = self.next_pdu(
            sender,
            "m.room.member",
            Some(target),
            json!({"membership": membership}),
        );
        let id = pdu.event_id.clone();
        let mut new_event = self.new_event(pdu);
        new_event.membership = Some(MembershipChange {
            user_id: user(target),
            membership: membership.to_owned(),
        });
        let persisted = self.append(store, new_event).await;
        (id, persisted)
    }
}

pub(crate) fn new_user(id: &str, password_hash: Option<&str>) -> NewUser {
    NewUser {
        user_id: user(id),
        password_hash: password_hash.map(str::to_owned),
        is_admin: false,
        created_ms: 1_000,
        displayname: None,
        is_guest: false,
    }
}

fn session(user_id: &str, device_id: &str, token: &str, refresh: Option<&str>) -> NewSession {
    NewSession {
        user_id: user(user_id),
        device_id: device(device_id),
        device_display_name: Some(format!("{device_id} name")),
        access_token_hash: token.to_owned(),
        refresh_token_hash: refresh.map(str::to_owned),
        expires_at_ms: None,
        created_ms: 2_000,
    }
}

fn ids<'a>(events: impl IntoIterator<Item = &'a crate::EventRecord>) -> Vec<OwnedEventId> {
    events.into_iter().map(|e| e.pdu.event_id.clone()).collect()
}

/// A message in `room` on top of `snapshot` with the given (fresh) ID; no state change.
fn loose_message(id: &str, room_id: &OwnedRoomId, snapshot: SnapshotId, depth: u64) -> NewEvent {
    NewEvent {
        pdu: pdu(
            id,
            room_id.as_str(),
            "@alice:localhost",
            "m.room.message",
            None,
            json!({"body": id}),
            depth,
            &[],
        ),
        room: None,
        state: NewState::Same(snapshot),
        updates_current_state: true,
        membership: None,
        txn: None,
        redaction: None,
        forward_extremities: vec![event(id)],
        resolved_current_state: None,
        destinations: Vec::new(),
        push_actions: Vec::new(),
    }
}
