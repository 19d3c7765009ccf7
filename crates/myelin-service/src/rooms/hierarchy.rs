//! Space hierarchies (spec: Client-Server API, "Spaces"; Server-Server API, "Spaces"): the rooms
//! under a space, found breadth-first through its `m.space.child` state events. Rooms we are
//! not in are summarised by a server in them (`/_matrix/federation/v1/hierarchy`).

use crate::rooms::Membership;
use ruma::events::StateEventType;
use std::collections::{HashMap, HashSet, VecDeque};

use myelin_federation::{path, Method};
use ruma::{OwnedRoomId, OwnedServerName, RoomId, ServerName, UserId};
use serde_json::{json, Value};

use super::RoomState;
use crate::{format::stripped_state, Rooms, ServiceError, ServiceResult};

/// The most rooms one hierarchy walk visits, whatever the page size.
const MAX_ROOMS: usize = 500;
const DEFAULT_LIMIT: usize = 50;
/// Remote summaries asked for in one walk.
const MAX_REMOTE_ASKS: usize = 20;
const TOKEN_PREFIX: &str = "h";

/// What a client asks of `GET /rooms/{roomId}/hierarchy`.
#[derive(Debug, Clone, Default)]
pub struct HierarchyQuery {
    pub from: Option<String>,
    pub limit: Option<usize>,
    pub max_depth: Option<usize>,
    pub suggested_only: bool,
}

/// A child named by a space: its ID and the servers to reach it through.
struct Child {
    room_id: OwnedRoomId,
    via: Vec<OwnedServerName>,
    /// The spec's ordering: a valid `order` first (by it), then by when the child was added.
    order: Option<String>,
    added_ts: u64,
}

/// `order` counts only when it is printable ASCII of at most 50 characters.
fn valid_order(order: Option<&str>) -> Option<String> {
    order
        .filter(|o| o.len() <= 50 && o.chars().all(|c| (' '..='~').contains(&c)))
        .map(str::to_owned)
}

/// The children a space lists (`m.space.child` with a non-empty `via`), suggested ones only
/// when asked.
fn children_of(children_state: &[Value], suggested_only: bool) -> Vec<Child> {
    let mut children: Vec<Child> = children_state
        .iter()
        .filter(|e| e["type"] == "m.space.child")
        .filter(|e| !suggested_only || e["content"]["suggested"] == true)
        .filter_map(|e| {
            let room_id = OwnedRoomId::try_from(e["state_key"].as_str()?).ok()?;
            let via: Vec<OwnedServerName> = e["content"]["via"]
                .as_array()?
                .iter()
                .filter_map(|s| OwnedServerName::try_from(s.as_str()?).ok())
                .collect();
            let order = valid_order(e["content"]["order"].as_str());
            let added_ts = e["origin_server_ts"].as_u64().unwrap_or(0);
            (!via.is_empty()).then_some(Child {
                room_id,
                via,
                order,
                added_ts,
            })
        })
        .collect();
    children.sort_by(|a, b| {
        // `Some` before `None`: children with an order come first.
        (a.order.is_none(), &a.order, a.added_ts, &a.room_id).cmp(&(
            b.order.is_none(),
            &b.order,
            b.added_ts,
            &b.room_id,
        ))
    });
    children
}

/// The `m.space.child` events of a room, as stripped state with their timestamps.
fn children_state(state: &RoomState) -> Vec<Value> {
    state
        .entries()
        .filter(|e| e.pdu.kind.to_string() == "m.space.child")
        .filter(|e| {
            e.pdu
                .content_value()
                .get("via")
                .is_some_and(|v| v.as_array().is_some_and(|v| !v.is_empty()))
        })
        .map(|e| {
            let mut event = stripped_state(&e.pdu);
            event["origin_server_ts"] = json!(e.pdu.origin_server_ts.get());
            event
        })
        .collect()
}

/// Whether anyone may peek at the room's summary: public, knockable or world-readable rooms.
fn open_to_all(state: &RoomState) -> bool {
    matches!(
        state.join_rule().as_str(),
        "public" | "knock" | "knock_restricted"
    ) || state.history_visibility() == "world_readable"
}

impl Rooms {
    /// A local room's summary for a hierarchy: the directory fields, `room_version`, and its
    /// `children_state`.
    async fn hierarchy_chunk(&self, room_id: &RoomId) -> ServiceResult<(Value, Vec<Value>)> {
        let state = self.room_state(room_id).await?;
        let mut chunk = self.directory_entry(room_id).await?.json;
        let children = children_state(&state);
        chunk["room_version"] = json!(state.version.as_str());
        chunk["children_state"] = json!(children);
        Ok((chunk, children))
    }

    /// Whether `user_id` may see the summary of a room we are in.
    async fn user_may_see(&self, user_id: &UserId, state: &RoomState) -> ServiceResult<bool> {
        if open_to_all(state)
            || matches!(
                state.membership(user_id),
                Some(Membership::Join | Membership::Invite | Membership::Knock)
            )
        {
            return Ok(true);
        }
        // A restricted room is visible to members of a room that allows them in.
        if matches!(
            state.join_rule().as_str(),
            "restricted" | "knock_restricted"
        ) {
            let allow = state
                .content(&StateEventType::RoomJoinRules, "")
                .unwrap_or_default();
            for rule in allow["allow"].as_array().into_iter().flatten() {
                let Some(room) = rule["room_id"].as_str().and_then(|r| RoomId::parse(r).ok())
                else {
                    continue;
                };
                if self.ctx.storage.room_info(&room).await?.is_some()
                    && self.room_state(&room).await?.membership(user_id) == Some(Membership::Join)
                {
                    return Ok(true);
                }
            }
        }
        Ok(false)
    }

    /// Whether this server takes part in the room (it has its state and a joined member).
    async fn is_local_room(&self, room_id: &RoomId) -> ServiceResult<bool> {
        Ok(self.ctx.storage.room_info(room_id).await?.is_some()
            && self.server_has_joined_member(room_id).await?)
    }

    /// `GET /rooms/{roomId}/hierarchy`.
    pub async fn room_hierarchy(
        &self,
        user_id: &UserId,
        root: &RoomId,
        query: HierarchyQuery,
    ) -> ServiceResult<Value> {
        let offset = match query.from.as_deref() {
            None => 0,
            Some(token) => token
                .strip_prefix(TOKEN_PREFIX)
                .and_then(|n| n.parse::<usize>().ok())
                .ok_or_else(|| ServiceError::InvalidParam("Invalid from token".into()))?,
        };
        let limit = query.limit.unwrap_or(DEFAULT_LIMIT).clamp(1, DEFAULT_LIMIT);
        if !self.is_local_room(root).await?
            || !self
                .user_may_see(user_id, &*self.room_state(root).await?)
                .await?
        {
            return Err(ServiceError::Forbidden(
                "You cannot see this space's hierarchy".into(),
            ));
        }

        let mut rooms: Vec<Value> = Vec::new();
        let mut seen: HashSet<OwnedRoomId> = HashSet::from([root.to_owned()]);
        let mut remote_known: HashMap<OwnedRoomId, Value> = HashMap::new();
        let mut remote_asks = 0;
        let mut queue: VecDeque<(OwnedRoomId, usize, Vec<OwnedServerName>)> =
            VecDeque::from([(root.to_owned(), 0, Vec::new())]);
        while rooms.len() < MAX_ROOMS.min(offset + limit) {
            let Some((room_id, depth, via)) = queue.pop_front() else {
                break;
            };
            let summary = if self.is_local_room(&room_id).await? {
                let state = self.room_state(&room_id).await?;
                if !self.user_may_see(user_id, &state).await? {
                    continue;
                }
                Some(self.hierarchy_chunk(&room_id).await?.0)
            } else if let Some(known) = remote_known.remove(&room_id) {
                Some(known)
            } else if remote_asks < MAX_REMOTE_ASKS {
                remote_asks += 1;
                self.remote_hierarchy(&room_id, &via, query.suggested_only, &mut remote_known)
                    .await
            } else {
                None
            };
            let Some(summary) = summary else {
                continue;
            };
            if query.max_depth.is_none_or(|max| depth < max) {
                let listed = summary["children_state"]
                    .as_array()
                    .cloned()
                    .unwrap_or_default();
                for child in children_of(&listed, query.suggested_only) {
                    if seen.insert(child.room_id.clone()) {
                        queue.push_back((child.room_id, depth + 1, child.via));
                    }
                }
            }
            rooms.push(summary);
        }

        // The walk stopped at the end of this page with rooms still to visit.
        let more = !queue.is_empty() && rooms.len() == offset + limit && rooms.len() < MAX_ROOMS;
        let page: Vec<Value> = rooms.into_iter().skip(offset).take(limit).collect();
        let mut answer = json!({ "rooms": page });
        if more {
            answer["next_batch"] = json!(format!("{TOKEN_PREFIX}{}", offset + limit));
        }
        Ok(answer)
    }

    /// Asks the `via` servers in turn for a room's summary; the children they describe too are
    /// kept in `known` for when the walk reaches them.
    async fn remote_hierarchy(
        &self,
        room_id: &RoomId,
        via: &[OwnedServerName],
        suggested_only: bool,
        known: &mut HashMap<OwnedRoomId, Value>,
    ) -> Option<Value> {
        let path = path::hierarchy(room_id, suggested_only);
        for server in via.iter().filter(|s| *s != self.ctx.server_name()).take(3) {
            match self
                .ctx
                .federation_call::<Value>(Method::GET, server, &path, None)
                .await
            {
                Ok(answer) if answer["room"]["room_id"] == room_id.as_str() => {
                    for child in answer["children"].as_array().into_iter().flatten() {
                        if let Some(id) = child["room_id"]
                            .as_str()
                            .and_then(|i| OwnedRoomId::try_from(i).ok())
                        {
                            known.entry(id).or_insert_with(|| child.clone());
                        }
                    }
                    return Some(answer["room"].clone());
                }
                Ok(_) => tracing::info!(%room_id, %server, "hierarchy answer for another room"),
                Err(e) => tracing::info!(%room_id, %server, error = %e, "remote hierarchy failed"),
            }
        }
        None
    }

    /// `GET /_matrix/federation/v1/hierarchy/{roomId}`: a room's summary and its children's, as
    /// far as the origin may see them.
    pub async fn federation_hierarchy(
        &self,
        origin: &ServerName,
        room_id: &RoomId,
        suggested_only: bool,
    ) -> ServiceResult<Value> {
        self.ctx.refuse_blocked(origin)?;
        // The space's server ACL refuses as on every federation endpoint; a child whose ACL
        // denies the origin is inaccessible to it.
        self.check_server_acl(origin, room_id).await?;
        let visible = |state: &RoomState| {
            crate::federation::acl::room_allows(state, origin)
                && (open_to_all(state)
                    || state
                        .joined_members()
                        .iter()
                        .any(|u| u.server_name() == origin))
        };
        if !self.is_local_room(room_id).await? || !visible(&*self.room_state(room_id).await?) {
            return Err(ServiceError::NotFound(format!(
                "{room_id} is not a room this server can describe to you"
            )));
        }
        let (room, children_events) = self.hierarchy_chunk(room_id).await?;
        let mut children = Vec::new();
        let mut inaccessible = Vec::new();
        for child in children_of(&children_events, suggested_only) {
            if !self.is_local_room(&child.room_id).await? {
                continue;
            }
            if visible(&*self.room_state(&child.room_id).await?) {
                children.push(self.hierarchy_chunk(&child.room_id).await?.0);
            } else {
                inaccessible.push(child.room_id);
            }
        }
        Ok(json!({ "room": room, "children": children, "inaccessible_children": inaccessible }))
    }
}
