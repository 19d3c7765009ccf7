//! Per-user data that is not about one room's timeline: account data and tags, profiles,
//! filters, push rules, the user directory and TURN credentials.

mod data;
pub mod directory;
pub mod profile;
pub mod push_rules;
mod voip;

use std::sync::Arc;

pub use voip::TurnConfig;

use crate::{Context, Rooms};

pub struct Users {
    pub(crate) ctx: Arc<Context>,
    pub(crate) rooms: Arc<Rooms>,
}

impl Users {
    pub fn new(ctx: Arc<Context>, rooms: Arc<Rooms>) -> Users {
        Users { ctx, rooms }
    }
}

#[cfg(test)]
mod tests;
