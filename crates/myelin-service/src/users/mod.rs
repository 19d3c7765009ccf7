//! Per-user data that is not about one room's timeline: account data and tags, profiles,
//! filters, push rules, the user directory and TURN credentials.

mod data;
pub mod directory;
pub mod profile;
pub mod push_rules;
mod voip;

use std::sync::Arc;

pub use voip::TurnConfig;

use crate::{Context, Push, Rooms};

pub struct Users {
    pub(crate) ctx: Arc<Context>,
    pub(crate) rooms: Arc<Rooms>,
    /// Told when a user's push rules change.
    pub(crate) push: Arc<Push>,
}

impl Users {
    pub fn new(ctx: Arc<Context>, rooms: Arc<Rooms>, push: Arc<Push>) -> Users {
        Users { ctx, rooms, push }
    }
}

#[cfg(test)]
mod tests;
