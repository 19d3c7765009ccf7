//! Guests leave a room whose `m.room.guest_access` stops being `can_join`, as Synapse does
//! (`kick_guest_users`): each local guest's own leave, so no power level is needed and the
//! decision stays with the guest's server. Run after a local or received guest-access change,
//! outside the room's write lock.

use ruma::{events::StateEventType, RoomId};
use serde_json::{json, Value};

use super::{Append, Membership, RoomState};
use crate::{Rooms, ServiceResult};

/// Whether this `m.room.guest_access` content lets guests in.
fn admits_guests(content: Option<&Value>) -> bool {
    content
        .and_then(|c| c.get("guest_access"))
        .and_then(Value::as_str)
        == Some("can_join")
}

impl Rooms {
    /// Whether `kind`/`content` is a guest-access change that closes the room to guests.
    pub(crate) fn closes_to_guests(kind: &str, content: &Value) -> bool {
        kind == StateEventType::RoomGuestAccess.to_string() && !admits_guests(Some(content))
    }

    /// When the room's guest access is not `can_join` (any more), makes each local guest in it
    /// (joined, invited, knocking) leave. A failure for one guest is logged and the rest go on.
    pub(crate) async fn remove_guests(&self, room_id: &RoomId) -> ServiceResult<()> {
        let state = self.room_state(room_id).await?;
        let content = state.content(&StateEventType::RoomGuestAccess, "");
        if admits_guests(content.as_ref()) {
            return Ok(());
        }
        for user_id in self.local_members(&state) {
            let is_guest = self
                .ctx
                .storage
                .get_user(&user_id)
                .await?
                .is_some_and(|u| u.is_guest);
            if !is_guest {
                continue;
            }
            let append = Append {
                sender: user_id.clone(),
                template: myelin_room::EventTemplate {
                    kind: "m.room.member".into(),
                    state_key: Some(user_id.to_string()),
                    content: json!({ "membership": "leave" }),
                    redacts: None,
                },
                txn: None,
                prebuilt: None,
                ts: None,
            };
            if let Err(e) = self.append_event(room_id, append).await {
                tracing::warn!(%room_id, %user_id, error = %e, "removing a guest failed");
            }
        }
        Ok(())
    }

    /// Our users who are joined to, invited to or knocking on the room.
    fn local_members(&self, state: &RoomState) -> Vec<ruma::OwnedUserId> {
        let present = [Membership::Join, Membership::Invite, Membership::Knock];
        state
            .members_with(&present)
            .into_iter()
            .filter(|u| u.server_name() == self.ctx.server_name())
            .collect()
    }
}
