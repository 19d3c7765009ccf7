//! The keys of a backup (`/room_keys/keys[/{roomId}[/{sessionId}]]`): uploads checked and
//! bounded, stored in the current version only; reads and deletes of a whole version, a room or
//! one session.

use std::collections::BTreeMap;

use myelin_storage::{BackedUpKey, BackupKeysWrite, KeySelection};
use ruma::{OwnedRoomId, UserId};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use super::{parse_version, unknown_version, KeyBackup, KeysUpdate, MAX_NAME_BYTES};
use crate::{ServiceError, ServiceResult};

/// The most session keys one upload may carry. Clients upload in batches (matrix-sdk 100,
/// matrix-js-sdk 200); the request body limit bounds the bytes, this bounds the rows one
/// transaction writes.
pub const MAX_SESSIONS_PER_REQUEST: usize = 1000;

/// The largest integer a Matrix JSON number may hold (canonical JSON: 2^53 - 1).
const MAX_JSON_INT: u64 = (1 << 53) - 1;

/// One session's key in a backup (`KeyBackupData` in the spec).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct KeyBackupData {
    pub first_message_index: u64,
    pub forwarded_count: u64,
    pub is_verified: bool,
    /// Encrypted for the backup's key; opaque to the server.
    pub session_data: Map<String, Value>,
}

/// The keys of one room, by session ID (`RoomKeyBackup`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct RoomKeyBackup {
    pub sessions: BTreeMap<String, KeyBackupData>,
}

/// The keys of several rooms, by room ID: the body of `PUT /room_keys/keys` and the answer to
/// `GET /room_keys/keys`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct RoomKeys {
    pub rooms: BTreeMap<String, RoomKeyBackup>,
}

impl RoomKeys {
    /// The keys of one room, as the room-level endpoints carry them.
    pub fn of_room(room_id: String, keys: RoomKeyBackup) -> RoomKeys {
        RoomKeys {
            rooms: BTreeMap::from([(room_id, keys)]),
        }
    }

    /// One session's key, as the session-level endpoints carry it.
    pub fn of_session(room_id: String, session_id: String, key: KeyBackupData) -> RoomKeys {
        let sessions = BTreeMap::from([(session_id, key)]);
        RoomKeys::of_room(room_id, RoomKeyBackup { sessions })
    }

    fn session_count(&self) -> usize {
        self.rooms.values().map(|r| r.sessions.len()).sum()
    }
}

fn room_id(room_id: &str) -> ServiceResult<OwnedRoomId> {
    OwnedRoomId::try_from(room_id)
        .map_err(|_| ServiceError::InvalidParam(format!("Invalid room ID {room_id:?}")))
}

fn session_id(session_id: &str) -> ServiceResult<String> {
    if session_id.is_empty() || session_id.len() > MAX_NAME_BYTES {
        return Err(ServiceError::InvalidParam(format!(
            "A session ID must be 1 to {MAX_NAME_BYTES} bytes"
        )));
    }
    Ok(session_id.to_owned())
}

fn json_int(value: u64, what: &str) -> ServiceResult<u64> {
    if value > MAX_JSON_INT {
        return Err(ServiceError::InvalidParam(format!(
            "{what} is larger than {MAX_JSON_INT}"
        )));
    }
    Ok(value)
}

/// The keys of an upload, checked, as storage rows.
fn rows(upload: RoomKeys) -> ServiceResult<Vec<BackedUpKey>> {
    let count = upload.session_count();
    if count > MAX_SESSIONS_PER_REQUEST {
        return Err(ServiceError::InvalidParam(format!(
            "Too many keys in one request: {count} (at most {MAX_SESSIONS_PER_REQUEST})"
        )));
    }
    let mut rows = Vec::with_capacity(count);
    for (room, keys) in upload.rooms {
        let room = room_id(&room)?;
        for (session, key) in keys.sessions {
            rows.push(BackedUpKey {
                room_id: room.clone(),
                session_id: session_id(&session)?,
                first_message_index: json_int(key.first_message_index, "first_message_index")?,
                forwarded_count: json_int(key.forwarded_count, "forwarded_count")?,
                is_verified: key.is_verified,
                session_data: Value::Object(key.session_data).to_string(),
            });
        }
    }
    Ok(rows)
}

fn wire(row: BackedUpKey) -> ServiceResult<(String, String, KeyBackupData)> {
    let session_data = match serde_json::from_str(&row.session_data) {
        Ok(Value::Object(data)) => data,
        _ => {
            return Err(ServiceError::Internal(
                "stored session_data is not a JSON object".into(),
            ))
        }
    };
    let key = KeyBackupData {
        first_message_index: row.first_message_index,
        forwarded_count: row.forwarded_count,
        is_verified: row.is_verified,
        session_data,
    };
    Ok((row.room_id.to_string(), row.session_id, key))
}

/// What a read or delete covers: the whole version, a room, or one session of a room.
fn selection(room: Option<&str>, session: Option<&str>) -> ServiceResult<KeySelection> {
    Ok(match (room, session) {
        (None, _) => KeySelection::All,
        (Some(room), None) => KeySelection::Room(room_id(room)?),
        (Some(room), Some(session)) => KeySelection::Session(room_id(room)?, session_id(session)?),
    })
}

impl KeyBackup {
    /// `PUT /room_keys/keys...`: stores the keys in `version`, which must be the current
    /// version (else 403 with the current one). For a session the backup already holds, the
    /// better key stays.
    pub async fn put_keys(
        &self,
        user_id: &UserId,
        version: &str,
        upload: RoomKeys,
    ) -> ServiceResult<KeysUpdate> {
        let number = parse_version(version).ok_or_else(unknown_version)?;
        let rows = rows(upload)?;
        match self
            .ctx
            .storage
            .put_backup_keys(user_id, number, &rows)
            .await?
        {
            BackupKeysWrite::Stored(counts) => Ok(counts.into()),
            BackupKeysWrite::UnknownVersion => Err(unknown_version()),
            BackupKeysWrite::NotCurrent { current } => Err(ServiceError::WrongRoomKeysVersion {
                current_version: current.to_string(),
            }),
        }
    }

    /// The selected keys of `version`, by room and session.
    async fn read(
        &self,
        user_id: &UserId,
        version: &str,
        selection: &KeySelection,
    ) -> ServiceResult<RoomKeys> {
        let number = parse_version(version).ok_or_else(unknown_version)?;
        let rows = self
            .ctx
            .storage
            .backup_keys(user_id, number, selection)
            .await?
            .ok_or_else(unknown_version)?;
        let mut keys = RoomKeys::default();
        for row in rows {
            let (room, session, key) = wire(row)?;
            keys.rooms
                .entry(room)
                .or_default()
                .sessions
                .insert(session, key);
        }
        Ok(keys)
    }

    /// `GET /room_keys/keys`: every key of the version (`{"rooms": {}}` when there are none).
    pub async fn keys(&self, user_id: &UserId, version: &str) -> ServiceResult<RoomKeys> {
        self.read(user_id, version, &KeySelection::All).await
    }

    /// `GET /room_keys/keys/{roomId}`: the room's keys (`{"sessions": {}}` when there are none).
    pub async fn room_keys(
        &self,
        user_id: &UserId,
        version: &str,
        room: &str,
    ) -> ServiceResult<RoomKeyBackup> {
        let mut keys = self
            .read(user_id, version, &selection(Some(room), None)?)
            .await?;
        Ok(keys.rooms.remove(room).unwrap_or_default())
    }

    /// `GET /room_keys/keys/{roomId}/{sessionId}`: one session's key; 404 if the backup does
    /// not hold it.
    pub async fn session_key(
        &self,
        user_id: &UserId,
        version: &str,
        room: &str,
        session: &str,
    ) -> ServiceResult<KeyBackupData> {
        let mut keys = self
            .read(user_id, version, &selection(Some(room), Some(session))?)
            .await?;
        keys.rooms
            .remove(room)
            .and_then(|mut r| r.sessions.remove(session))
            .ok_or_else(|| ServiceError::NotFound("No key for this session in the backup".into()))
    }

    /// `DELETE /room_keys/keys[/{roomId}[/{sessionId}]]`: deletes the selected keys from any
    /// version that exists (not only the current one).
    pub async fn delete_keys(
        &self,
        user_id: &UserId,
        version: &str,
        room: Option<&str>,
        session: Option<&str>,
    ) -> ServiceResult<KeysUpdate> {
        let number = parse_version(version).ok_or_else(unknown_version)?;
        let selection = selection(room, session)?;
        self.ctx
            .storage
            .delete_backup_keys(user_id, number, &selection)
            .await?
            .map(KeysUpdate::from)
            .ok_or_else(unknown_version)
    }
}
