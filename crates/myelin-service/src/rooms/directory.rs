//! The public room directory (spec: client-server "Room directory" → "Listing rooms";
//! server-server "Public Room Directory"): which rooms are published, and the list of them —
//! of the main directory, of one appservice network's (rooms an appservice published with
//! `PUT /directory/list/appservice/{networkId}/{roomId}`), or of all of them.

use crate::rooms::Membership;
use myelin_federation::{encode_segment, path, Method};
use ruma::events::StateEventType;
use ruma::{OwnedRoomId, RoomId, ServerName, UserId};
use serde::Deserialize;
use serde_json::{json, Value};

use crate::{Rooms, ServiceError, ServiceResult};

/// What a `/publicRooms` request asks for (client or federation, GET or POST): `limit`,
/// `since` and `filter` (`generic_search_term`, `room_types`) as the spec's request body has
/// them, and which directory: the main one (the default), one appservice network's
/// (`third_party_instance_id`), or the main one and every network's (`include_all_networks`).
#[derive(Debug, Clone, Default, Deserialize)]
pub struct PublicRoomsQuery {
    limit: Option<u64>,
    since: Option<String>,
    #[serde(default)]
    filter: Option<PublicRoomsFilter>,
    #[serde(default)]
    include_all_networks: bool,
    third_party_instance_id: Option<String>,
}

#[derive(Debug, Clone, Default, Deserialize)]
struct PublicRoomsFilter {
    generic_search_term: Option<String>,
    /// Room types to include; `None` inside the list stands for rooms without a type.
    room_types: Option<Vec<Option<String>>>,
}

impl PublicRoomsQuery {
    /// A GET's query string.
    pub fn from_get(
        limit: Option<u64>,
        since: Option<String>,
        include_all_networks: bool,
        third_party_instance_id: Option<String>,
    ) -> Self {
        PublicRoomsQuery {
            limit,
            since,
            filter: None,
            include_all_networks,
            third_party_instance_id,
        }
    }

    /// A POST's body.
    pub fn from_body(body: &Value) -> ServiceResult<Self> {
        if !body.is_object() {
            return Err(ServiceError::BadJson("Body must be a JSON object".into()));
        }
        serde_json::from_value(body.clone())
            .map_err(|e| ServiceError::BadJson(format!("Invalid body: {e}")))
    }

    /// Which directory the request lists. Naming a network and asking for all of them is
    /// refused (the spec allows `third_party_instance_id` only without `include_all_networks`).
    fn networks(&self) -> ServiceResult<Networks<'_>> {
        match (&self.third_party_instance_id, self.include_all_networks) {
            (None, false) => Ok(Networks::Main),
            (None, true) => Ok(Networks::All),
            (Some(_), true) => Err(ServiceError::InvalidParam(
                "third_party_instance_id cannot be used with include_all_networks".into(),
            )),
            (Some(id), false) => parse_instance_id(id)
                .map(|(appservice_id, network_id)| Networks::One {
                    appservice_id,
                    network_id,
                })
                .ok_or_else(|| {
                    ServiceError::InvalidParam(format!("Invalid third_party_instance_id {id:?}"))
                }),
        }
    }
}

/// The directories a `/publicRooms` lists.
enum Networks<'a> {
    /// The main directory (`PUT /directory/list/room/{roomId}`).
    Main,
    /// One appservice network's (`PUT /directory/list/appservice/{networkId}/{roomId}`).
    One {
        appservice_id: &'a str,
        network_id: &'a str,
    },
    /// The main one and every network's.
    All,
}

/// The `instance_id` of an appservice's network, as `/thirdparty/protocols` reports it and
/// `/publicRooms` takes it back as `third_party_instance_id`: `<appservice ID>|<network ID>`, the
/// form Synapse uses, so clients and bridges see the same identifiers on both servers.
pub fn instance_id(appservice_id: &str, network_id: &str) -> String {
    format!("{appservice_id}|{network_id}")
}

/// The appservice and network of an `instance_id`: exactly one `|`.
fn parse_instance_id(id: &str) -> Option<(&str, &str)> {
    id.split_once('|')
        .filter(|(_, network_id)| !network_id.contains('|'))
}

impl PublicRoomsQuery {
    fn has_filter(&self) -> bool {
        self.filter.as_ref().is_some_and(|f| {
            f.generic_search_term
                .as_deref()
                .is_some_and(|t| !t.is_empty())
                || f.room_types.as_ref().is_some_and(|t| !t.is_empty())
        })
    }
}

/// Pagination tokens are an offset into the sorted list, behind a prefix to keep them opaque.
const TOKEN_PREFIX: &str = "pr";

fn parse_since(since: Option<&str>) -> ServiceResult<usize> {
    let Some(since) = since.filter(|s| !s.is_empty()) else {
        return Ok(0);
    };
    since
        .strip_prefix(TOKEN_PREFIX)
        .and_then(|n| n.parse().ok())
        .ok_or_else(|| ServiceError::InvalidParam("Invalid since token".into()))
}

/// One room's entry in the directory (a `PublishedRoomsChunk`).
pub(crate) struct DirectoryEntry {
    room_id: String,
    joined: usize,
    room_type: Option<String>,
    /// Lowercased texts a search term is matched against.
    searchable: Vec<String>,
    pub(crate) json: Value,
}

impl Rooms {
    /// `GET /directory/list/room/{roomId}`: `public` or `private`; unknown rooms are not found.
    pub async fn room_directory_visibility(&self, room_id: &RoomId) -> ServiceResult<&'static str> {
        if self.ctx.storage.room_info(room_id).await?.is_none() {
            return Err(ServiceError::NotFound("Room not found".into()));
        }
        Ok(if self.ctx.storage.is_room_published(room_id).await? {
            "public"
        } else {
            "private"
        })
    }

    /// `PUT /directory/list/room/{roomId}`: joined members with the power to send
    /// `m.room.canonical_alias` (as Synapse requires), or server admins.
    pub async fn set_room_directory_visibility(
        &self,
        user_id: &UserId,
        room_id: &RoomId,
        public: bool,
    ) -> ServiceResult<()> {
        if self.ctx.storage.room_info(room_id).await?.is_none() {
            return Err(ServiceError::NotFound("Room not found".into()));
        }
        let state = self.room_state(room_id).await?;
        let allowed = state.membership(user_id) == Some(Membership::Join)
            && state.user_power(user_id) >= state.state_event_level("m.room.canonical_alias");
        if !allowed {
            let admin = self
                .ctx
                .storage
                .get_user(user_id)
                .await?
                .is_some_and(|u| u.is_admin);
            if !admin {
                return Err(ServiceError::Forbidden(
                    "You may not change this room's visibility in the room directory".into(),
                ));
            }
        }
        self.ctx.storage.set_room_published(room_id, public).await?;
        Ok(())
    }

    /// `/publicRooms` for a client: our own list, or (with `server` naming another server) that
    /// server's answer to its federation `/publicRooms`.
    pub async fn public_rooms(
        &self,
        server: Option<&ServerName>,
        query: &PublicRoomsQuery,
    ) -> ServiceResult<Value> {
        match server {
            Some(server) if server != self.ctx.server_name() => {
                self.remote_public_rooms(server, query).await
            }
            _ => self.list_public_rooms(query).await,
        }
    }

    async fn remote_public_rooms(
        &self,
        server: &ServerName,
        query: &PublicRoomsQuery,
    ) -> ServiceResult<Value> {
        let path = path::PUBLIC_ROOMS;
        if query.has_filter() {
            let mut body = json!({});
            if let Some(limit) = query.limit {
                body["limit"] = json!(limit);
            }
            if let Some(since) = &query.since {
                body["since"] = json!(since);
            }
            if query.include_all_networks {
                body["include_all_networks"] = json!(true);
            }
            if let Some(id) = &query.third_party_instance_id {
                body["third_party_instance_id"] = json!(id);
            }
            if let Some(filter) = &query.filter {
                let mut f = json!({});
                if let Some(term) = &filter.generic_search_term {
                    f["generic_search_term"] = json!(term);
                }
                if let Some(types) = &filter.room_types {
                    f["room_types"] = json!(types);
                }
                body["filter"] = f;
            }
            self.ctx
                .federation_call(Method::POST, server, path, Some(body))
                .await
        } else {
            let mut params = Vec::new();
            if let Some(limit) = query.limit {
                params.push(format!("limit={limit}"));
            }
            if let Some(since) = &query.since {
                params.push(format!("since={}", encode_segment(since)));
            }
            if query.include_all_networks {
                params.push("include_all_networks=true".to_owned());
            }
            if let Some(id) = &query.third_party_instance_id {
                params.push(format!("third_party_instance_id={}", encode_segment(id)));
            }
            let full = if params.is_empty() {
                path.to_owned()
            } else {
                format!("{path}?{}", params.join("&"))
            };
            self.ctx
                .federation_call(Method::GET, server, &full, None)
                .await
        }
    }

    /// Our own directory, for another server.
    pub async fn local_public_rooms(&self, query: &PublicRoomsQuery) -> ServiceResult<Value> {
        self.list_public_rooms(query).await
    }

    /// This server's public room directory (the directories the query names): published rooms
    /// by joined members (most first), then room ID, filtered and paginated by offset tokens.
    async fn list_public_rooms(&self, query: &PublicRoomsQuery) -> ServiceResult<Value> {
        let networks = query.networks()?;
        let offset = parse_since(query.since.as_deref())?;
        let term = query
            .filter
            .as_ref()
            .and_then(|f| f.generic_search_term.as_deref())
            .map(str::to_lowercase)
            .filter(|t| !t.is_empty());
        let types = query
            .filter
            .as_ref()
            .and_then(|f| f.room_types.as_ref())
            .filter(|t| !t.is_empty());

        let mut entries = Vec::new();
        for room_id in self.published_in(networks).await? {
            match self.directory_entry(&room_id).await {
                Ok(entry) => entries.push(entry),
                Err(e) => tracing::debug!(%room_id, error = %e, "published room left out"),
            }
        }
        entries.retain(|e| {
            types.is_none_or(|t| t.contains(&e.room_type))
                && term
                    .as_ref()
                    .is_none_or(|term| e.searchable.iter().any(|s| s.contains(term.as_str())))
        });
        entries.sort_by(|a, b| b.joined.cmp(&a.joined).then(a.room_id.cmp(&b.room_id)));

        let total = entries.len();
        let limit = query
            .limit
            .map(|l| usize::try_from(l).unwrap_or(usize::MAX))
            .unwrap_or(usize::MAX);
        let start = offset.min(total);
        let end = start.saturating_add(limit).min(total);
        let chunk: Vec<Value> = entries.drain(start..end).map(|e| e.json).collect();
        let mut answer = json!({
            "chunk": chunk,
            "total_room_count_estimate": total,
        });
        if end < total {
            answer["next_batch"] = json!(format!("{TOKEN_PREFIX}{end}"));
        }
        if start > 0 {
            let prev = start.saturating_sub(limit);
            answer["prev_batch"] = json!(format!("{TOKEN_PREFIX}{prev}"));
        }
        Ok(answer)
    }

    /// The rooms published in the directories named, each once.
    async fn published_in(&self, networks: Networks<'_>) -> ServiceResult<Vec<OwnedRoomId>> {
        let storage = &self.ctx.storage;
        Ok(match networks {
            Networks::Main => storage.published_rooms().await?,
            Networks::One {
                appservice_id,
                network_id,
            } => {
                storage
                    .network_published_rooms(Some((appservice_id, network_id)))
                    .await?
            }
            Networks::All => {
                let mut rooms = storage.published_rooms().await?;
                rooms.extend(storage.network_published_rooms(None).await?);
                rooms.sort_unstable();
                rooms.dedup();
                rooms
            }
        })
    }

    pub(crate) async fn directory_entry(&self, room_id: &RoomId) -> ServiceResult<DirectoryEntry> {
        let state = self.room_state(room_id).await?;
        let text = |kind: &str, field: &str| {
            state
                .content(&kind.into(), "")
                .and_then(|c| c.get(field).and_then(Value::as_str).map(str::to_owned))
                .filter(|s| !s.is_empty())
        };
        let room_type = state
            .content(&StateEventType::RoomCreate, "")
            .and_then(|c| c.get("type").and_then(Value::as_str).map(str::to_owned));
        let joined = state.joined_members().len();
        let name = text("m.room.name", "name");
        let topic = text("m.room.topic", "topic");
        let alias = text("m.room.canonical_alias", "alias");
        let mut json = json!({
            "room_id": room_id,
            "num_joined_members": joined,
            "world_readable": state.history_visibility() == "world_readable",
            "guest_can_join": text("m.room.guest_access", "guest_access").as_deref() == Some("can_join"),
            "join_rule": state.join_rule(),
        });
        let optional = [
            ("name", name.clone()),
            ("topic", topic.clone()),
            ("avatar_url", text("m.room.avatar", "url")),
            ("canonical_alias", alias.clone()),
            ("room_type", room_type.clone()),
        ];
        for (field, value) in optional {
            if let Some(value) = value {
                json[field] = json!(value);
            }
        }
        let searchable = [name, topic, alias, Some(room_id.to_string())]
            .into_iter()
            .flatten()
            .map(|s| s.to_lowercase())
            .collect();
        Ok(DirectoryEntry {
            room_id: room_id.to_string(),
            joined,
            room_type,
            searchable,
            json,
        })
    }
}
