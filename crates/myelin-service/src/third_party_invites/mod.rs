//! Third-party invites (spec: Client-Server API, "Third-party invites"; Server-Server API,
//! "Third-party invites"): inviting an e-mail address through an identity server, and turning
//! such an invite into a membership once the address is bound. `invite.rs` is the inviter's
//! side (`POST /rooms/{roomId}/invite` with a 3PID: a lookup, then an ordinary invite or a
//! stored invite and its `m.room.third_party_invite` event); `exchange.rs` is the completion
//! (`3pid/onbind` from the identity server, `exchange_third_party_invite` between servers).
//! The signature in `third_party_invite.signed` is checked by the auth rules (ruma's), against
//! the public keys of the room's `m.room.third_party_invite` event.

mod exchange;
mod invite;

use std::sync::Arc;

pub use exchange::{OnBind, OnBindInvite};
pub use invite::ThreepidInvite;

use crate::{federation::Handshakes, threepids::Threepids, Context, Memberships, Rooms};

/// The most invites one onbind notification may carry.
const MAX_ONBIND_INVITES: usize = 100;
/// The largest `third_party_invite.signed` object accepted (a token, an MXID and signatures).
const MAX_SIGNED_BYTES: usize = 8 * 1024;

pub struct ThirdPartyInvites {
    ctx: Arc<Context>,
    rooms: Arc<Rooms>,
    membership: Arc<Memberships>,
    handshakes: Arc<Handshakes>,
    threepids: Arc<Threepids>,
}

impl ThirdPartyInvites {
    pub fn new(
        ctx: Arc<Context>,
        rooms: Arc<Rooms>,
        membership: Arc<Memberships>,
        handshakes: Arc<Handshakes>,
        threepids: Arc<Threepids>,
    ) -> ThirdPartyInvites {
        ThirdPartyInvites {
            ctx,
            rooms,
            membership,
            handshakes,
            threepids,
        }
    }
}

#[cfg(test)]
mod tests;
