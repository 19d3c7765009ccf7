//! What a user does to a room's membership, and to rooms as wholes: join, knock, leave, invite,
//! kick, ban, unban, forget, profile changes in every room, creating and upgrading rooms. Local
//! rooms change through [`Rooms`]' append path; rooms we are not in go through
//! [`Handshakes`] with a server that is.

mod actions;
mod create;
mod upgrade;

use std::sync::Arc;

pub use create::{CreateRoomRequest, InitialStateEvent};

use crate::{federation::Handshakes, Context, Rooms};

pub struct Memberships {
    pub(crate) ctx: Arc<Context>,
    pub(crate) rooms: Arc<Rooms>,
    pub(crate) handshakes: Arc<Handshakes>,
}

impl Memberships {
    pub fn new(ctx: Arc<Context>, rooms: Arc<Rooms>, handshakes: Arc<Handshakes>) -> Memberships {
        Memberships {
            ctx,
            rooms,
            handshakes,
        }
    }
}

#[cfg(test)]
mod tests;

#[cfg(test)]
mod versions_tests;
