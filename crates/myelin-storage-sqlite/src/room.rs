//! `RoomStore`: events, state, timelines, memberships and aliases.

use async_trait::async_trait;
use myelin_core::StreamPos;
use myelin_storage::rows::{self, MEMBERSHIP_COLUMNS, ROOM_INFO_COLUMNS};
use myelin_storage::{
    BackfilledEvent, Direction, EventRecord, MembershipRecord, NewEvent, NewOutlier, Persisted,
    RoomInfo, RoomStore, SnapshotId, StateKey, StateMap, StorageResult, TimelineSpan,
};
use ruma::{EventId, OwnedEventId, OwnedRoomId, OwnedUserId, RoomAliasId, RoomId, UserId};
use rusqlite::{params, Connection, OptionalExtension};

use crate::convert::{
    json_list, limit, now_ms, parse_id, query_all, query_first, to_i64, to_u64, Db,
};
use crate::events::{query_events, query_outliers, EVENT_COLUMNS, OUTLIER_COLUMNS};
use crate::{persist, state, SqliteStore};

#[async_trait]
impl RoomStore for SqliteStore {
    async fn persist_event(&self, event: NewEvent) -> StorageResult<Persisted> {
        let numbers = self.db.member_numbers.clone();
        self.db
            .write(move |tx, positions| persist::persist_event(tx, positions, &numbers, event))
            .await
    }

    async fn persist_events(&self, events: Vec<NewEvent>) -> StorageResult<Vec<Persisted>> {
        let numbers = self.db.member_numbers.clone();
        self.db
            .write(move |tx, positions| persist::persist_events(tx, positions, &numbers, events))
            .await
    }

    async fn persist_with_outliers(
        &self,
        outliers: Vec<NewOutlier>,
        events: Vec<NewEvent>,
    ) -> StorageResult<Vec<Persisted>> {
        let numbers = self.db.member_numbers.clone();
        self.db
            .write(move |tx, positions| {
                // Outliers first: an event of the batch that is among them moves to the timeline.
                persist::persist_outliers(tx, &outliers)?;
                persist::persist_events(tx, positions, &numbers, events)
            })
            .await
    }

    async fn persist_backfilled(
        &self,
        events: Vec<BackfilledEvent>,
    ) -> StorageResult<Vec<StreamPos>> {
        self.db
            .write(move |tx, _| persist::persist_backfilled(tx, events))
            .await
    }

    async fn room_info(&self, room_id: &RoomId) -> StorageResult<Option<RoomInfo>> {
        let room_id = room_id.to_owned();
        self.db
            .read(move |conn| {
                let sql = format!("SELECT {ROOM_INFO_COLUMNS} FROM rooms WHERE room_id = ?1");
                query_first(conn, &sql, [room_id.as_str()], |row| {
                    rows::room_info(room_id.clone(), row)
                })
            })
            .await
    }

    async fn get_event(&self, event_id: &EventId) -> StorageResult<Option<EventRecord>> {
        let event_id = event_id.to_owned();
        self.db
            .read(move |conn| {
                let sql = format!("SELECT {EVENT_COLUMNS} FROM events WHERE event_id = ?1");
                if let Some(found) = query_events(conn, &sql, [event_id.as_str()])?.pop() {
                    return Ok(Some(found));
                }
                let sql =
                    format!("SELECT {OUTLIER_COLUMNS} FROM event_outliers WHERE event_id = ?1");
                Ok(query_outliers(conn, &sql, [event_id.as_str()])?.pop())
            })
            .await
    }

    async fn get_events(&self, ids: &[OwnedEventId]) -> StorageResult<Vec<EventRecord>> {
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let ids = json_list(ids)?;
        self.db
            .read(move |conn| {
                let sql =
                    format!("SELECT {EVENT_COLUMNS} FROM events WHERE event_id IN (SELECT value FROM json_each(?1))");
                let mut found = query_events(conn, &sql, [&ids])?;
                // An ID is in at most one of the tables (see `persist`).
                let sql = format!(
                    "SELECT {OUTLIER_COLUMNS} FROM event_outliers WHERE event_id IN (SELECT value FROM json_each(?1))"
                );
                found.extend(query_outliers(conn, &sql, [&ids])?);
                Ok(found)
            })
            .await
    }

    async fn event_for_txn(
        &self,
        user_id: &UserId,
        device_id: &str,
        txn_id: &str,
    ) -> StorageResult<Option<OwnedEventId>> {
        let key = (user_id.to_string(), device_id.to_owned(), txn_id.to_owned());
        self.db
            .read(move |conn| {
                let found = conn
                    .prepare_cached(
                        "SELECT event_id FROM event_txns WHERE user_id = ?1 AND device_id = ?2 AND txn_id = ?3",
                    )
                    .db()?
                    .query_row(params![key.0, key.1, key.2], |row| row.get::<_, String>(0))
                    .optional()
                    .db()?;
                found.map(|id| parse_id(id, "event ID")).transpose()
            })
            .await
    }

    async fn current_state(&self, room_id: &RoomId) -> StorageResult<StateMap> {
        let room_id = room_id.to_owned();
        self.db
            .read(move |conn| state::current_state(conn, room_id.as_str()))
            .await
    }

    async fn state_at_snapshot(&self, snapshot: SnapshotId) -> StorageResult<StateMap> {
        self.db
            .read(move |conn| state::load_state(conn, snapshot))
            .await
    }

    async fn state_entries_at(
        &self,
        snapshot: SnapshotId,
        keys: &[StateKey],
    ) -> StorageResult<StateMap> {
        let keys = keys.to_vec();
        self.db
            .read(move |conn| state::load_entries(conn, snapshot, &keys))
            .await
    }

    async fn forward_extremities(&self, room_id: &RoomId) -> StorageResult<Vec<OwnedEventId>> {
        let room_id = room_id.to_owned();
        self.db
            .read(move |conn| {
                let ids = conn
                    .prepare_cached("SELECT event_id FROM forward_extremities WHERE room_id = ?1")
                    .db()?
                    .query_map([room_id.as_str()], |row| row.get::<_, String>(0))
                    .db()?
                    .collect::<rusqlite::Result<Vec<_>>>()
                    .db()?;
                ids.into_iter()
                    .map(|id| parse_id(id, "forward extremity"))
                    .collect()
            })
            .await
    }

    async fn room_events(
        &self,
        room_id: &RoomId,
        from: StreamPos,
        to: Option<StreamPos>,
        dir: Direction,
        limit_: usize,
    ) -> StorageResult<Vec<EventRecord>> {
        if limit_ == 0 {
            return Ok(Vec::new());
        }
        let room_id = room_id.to_owned();
        let to = to.map(|p| p.0);
        self.db
            .read(move |conn| {
                let sql = match dir {
                    Direction::Backward => format!(
                        "SELECT {EVENT_COLUMNS} FROM events
                         WHERE room_id = ?1 AND stream_pos <= ?2 AND (?3 IS NULL OR stream_pos > ?3)
                         ORDER BY stream_pos DESC LIMIT ?4"
                    ),
                    Direction::Forward => format!(
                        "SELECT {EVENT_COLUMNS} FROM events
                         WHERE room_id = ?1 AND stream_pos > ?2 AND (?3 IS NULL OR stream_pos <= ?3)
                         ORDER BY stream_pos ASC LIMIT ?4"
                    ),
                };
                query_events(
                    conn,
                    &sql,
                    params![room_id.as_str(), from.0, to, limit(limit_)],
                )
            })
            .await
    }

    async fn latest_of_types(
        &self,
        spans: &[TimelineSpan],
        types: &[&str],
        walk: usize,
    ) -> StorageResult<Vec<Option<StreamPos>>> {
        if spans.is_empty() {
            return Ok(Vec::new());
        }
        let spans = spans.to_vec();
        let types: Vec<String> = types.iter().map(|t| (*t).to_owned()).collect();
        // One read for every room: a keyed walk each, positions and types only.
        self.db
            .read(move |conn| {
                spans
                    .iter()
                    .map(|span| latest_of_types_in(conn, span, &types, walk))
                    .collect()
            })
            .await
    }

    async fn latest_events_of(
        &self,
        spans: &[TimelineSpan],
        limit_: usize,
    ) -> StorageResult<Vec<Vec<EventRecord>>> {
        if spans.is_empty() || limit_ == 0 {
            return Ok(vec![Vec::new(); spans.len()]);
        }
        let spans = spans.to_vec();
        // One read for every room: the same keyed walk as `room_events`, per span.
        self.db
            .read(move |conn| {
                let sql = format!(
                    "SELECT {EVENT_COLUMNS} FROM events
                     WHERE room_id = ?1 AND stream_pos <= ?2 AND (?3 IS NULL OR stream_pos > ?3)
                     ORDER BY stream_pos DESC LIMIT ?4"
                );
                spans
                    .iter()
                    .map(|span| {
                        let floor = span.floor.map(|p| p.0);
                        let room = span.room_id.as_str();
                        query_events(conn, &sql, params![room, span.from.0, floor, limit(limit_)])
                    })
                    .collect()
            })
            .await
    }

    async fn event_near_timestamp(
        &self,
        room_id: &RoomId,
        ts: u64,
        dir: Direction,
    ) -> StorageResult<Option<(OwnedEventId, u64)>> {
        let room_id = room_id.to_owned();
        let ts = to_i64(ts, "timestamp")?;
        let sql = match dir {
            Direction::Forward => {
                "SELECT event_id, origin_server_ts FROM events
                 WHERE room_id = ?1 AND origin_server_ts >= ?2 AND rejected = 0
                 ORDER BY origin_server_ts, stream_pos LIMIT 1"
            }
            Direction::Backward => {
                "SELECT event_id, origin_server_ts FROM events
                 WHERE room_id = ?1 AND origin_server_ts <= ?2 AND rejected = 0
                 ORDER BY origin_server_ts DESC, stream_pos DESC LIMIT 1"
            }
        };
        self.db
            .read(move |conn| {
                let found = conn
                    .prepare_cached(sql)
                    .db()?
                    .query_row(params![room_id.as_str(), ts], |row| {
                        Ok((row.get::<_, String>(0)?, row.get::<_, i64>(1)?))
                    })
                    .optional()
                    .db()?;
                found
                    .map(|(id, ts)| Ok((parse_id(id, "event ID")?, to_u64(ts, "timestamp")?)))
                    .transpose()
            })
            .await
    }

    async fn rooms_with_events_between(
        &self,
        after: StreamPos,
        up_to: StreamPos,
    ) -> StorageResult<Vec<OwnedRoomId>> {
        self.db
            .read(move |conn| {
                let mut stmt = conn
                    .prepare_cached("SELECT DISTINCT room_id FROM events WHERE stream_pos > ?1 AND stream_pos <= ?2")
                    .db()?;
                let ids = stmt.query_map(params![after.0, up_to.0], |row| row.get::<_, String>(0)).db()?;
                ids.map(|id| parse_id(id.db()?, "room ID")).collect()
            })
            .await
    }

    async fn memberships_of_user(&self, user_id: &UserId) -> StorageResult<Vec<MembershipRecord>> {
        let user_id = user_id.to_owned();
        self.db
            .read(move |conn| {
                query_memberships(
                    conn,
                    "WHERE user_id = ?1 ORDER BY stream_pos",
                    user_id.as_str(),
                )
            })
            .await
    }

    async fn room_members(&self, room_id: &RoomId) -> StorageResult<Vec<MembershipRecord>> {
        let room_id = room_id.to_owned();
        self.db
            .read(move |conn| {
                query_memberships(
                    conn,
                    "WHERE room_id = ?1 ORDER BY user_id",
                    room_id.as_str(),
                )
            })
            .await
    }

    async fn forget_room(&self, user_id: &UserId, room_id: &RoomId) -> StorageResult<()> {
        let (user_id, room_id) = (user_id.to_owned(), room_id.to_owned());
        self.db
            .write(move |tx, _| {
                tx.prepare_cached(
                    "UPDATE room_memberships SET forgotten = 1 WHERE room_id = ?1 AND user_id = ?2",
                )
                .db()?
                .execute(params![room_id.as_str(), user_id.as_str()])
                .db()?;
                Ok(())
            })
            .await
    }

    async fn create_alias(
        &self,
        alias: &RoomAliasId,
        room_id: &RoomId,
        creator: &UserId,
    ) -> StorageResult<bool> {
        let (alias, room_id, creator) = (alias.to_string(), room_id.to_owned(), creator.to_owned());
        self.db
            .write(move |tx, _| {
                let inserted = tx
                    .prepare_cached(
                        "INSERT INTO room_aliases (alias, room_id, creator) VALUES (?1, ?2, ?3)
                         ON CONFLICT (alias) DO NOTHING",
                    )
                    .db()?
                    .execute(params![alias, room_id.as_str(), creator.as_str()])
                    .db()?;
                Ok(inserted == 1)
            })
            .await
    }

    async fn resolve_alias(
        &self,
        alias: &RoomAliasId,
    ) -> StorageResult<Option<(OwnedRoomId, OwnedUserId)>> {
        let alias = alias.to_string();
        self.db
            .read(move |conn| {
                let row = conn
                    .prepare_cached("SELECT room_id, creator FROM room_aliases WHERE alias = ?1")
                    .db()?
                    .query_row([alias], |row| {
                        Ok((row.get::<_, String>(0)?, row.get::<_, String>(1)?))
                    })
                    .optional()
                    .db()?;
                row.map(|(room, creator)| {
                    Ok((
                        parse_id(room, "alias room")?,
                        parse_id(creator, "alias creator")?,
                    ))
                })
                .transpose()
            })
            .await
    }

    async fn delete_alias(&self, alias: &RoomAliasId) -> StorageResult<bool> {
        let alias = alias.to_string();
        self.db
            .write(move |tx, _| {
                let deleted = tx
                    .prepare_cached("DELETE FROM room_aliases WHERE alias = ?1")
                    .db()?
                    .execute([alias])
                    .db()?;
                Ok(deleted == 1)
            })
            .await
    }

    async fn aliases_of_room(&self, room_id: &RoomId) -> StorageResult<Vec<String>> {
        let room_id = room_id.to_owned();
        self.db
            .read(move |conn| {
                conn.prepare_cached(
                    "SELECT alias FROM room_aliases WHERE room_id = ?1 ORDER BY alias",
                )
                .db()?
                .query_map([room_id.as_str()], |row| row.get::<_, String>(0))
                .db()?
                .collect::<rusqlite::Result<Vec<_>>>()
                .db()
            })
            .await
    }

    async fn set_room_published(&self, room_id: &RoomId, published: bool) -> StorageResult<()> {
        let room_id = room_id.to_owned();
        self.db
            .write(move |tx, _| {
                if published {
                    tx.prepare_cached(
                        "INSERT INTO room_directory (room_id, published_ms) VALUES (?1, ?2)
                         ON CONFLICT (room_id) DO NOTHING",
                    )
                    .db()?
                    .execute(params![room_id.as_str(), now_ms()])
                    .db()?;
                } else {
                    tx.prepare_cached("DELETE FROM room_directory WHERE room_id = ?1")
                        .db()?
                        .execute([room_id.as_str()])
                        .db()?;
                }
                Ok(())
            })
            .await
    }

    async fn is_room_published(&self, room_id: &RoomId) -> StorageResult<bool> {
        let room_id = room_id.to_owned();
        self.db
            .read(move |conn| {
                Ok(conn
                    .prepare_cached("SELECT 1 FROM room_directory WHERE room_id = ?1")
                    .db()?
                    .query_row([room_id.as_str()], |_| Ok(()))
                    .optional()
                    .db()?
                    .is_some())
            })
            .await
    }

    async fn published_rooms(&self) -> StorageResult<Vec<OwnedRoomId>> {
        self.db
            .read(move |conn| {
                let ids = conn
                    .prepare_cached("SELECT room_id FROM room_directory ORDER BY room_id")
                    .db()?
                    .query_map([], |row| row.get::<_, String>(0))
                    .db()?
                    .collect::<rusqlite::Result<Vec<_>>>()
                    .db()?;
                ids.into_iter()
                    .map(|id| parse_id(id, "published room"))
                    .collect()
            })
            .await
    }

    async fn current_stream_pos(&self) -> StorageResult<StreamPos> {
        Ok(self.db.stream_pos())
    }
}

/// Membership rows matching `filter` (a `WHERE ... ORDER BY ...` clause with one parameter).
fn query_memberships(
    conn: &Connection,
    filter: &str,
    param: &str,
) -> StorageResult<Vec<MembershipRecord>> {
    let sql = format!("SELECT {MEMBERSHIP_COLUMNS} FROM room_memberships {filter}");
    query_all(conn, &sql, [param], rows::membership)
}

/// The newest event of `types` among the span's `walk` newest events, at a positive position.
fn latest_of_types_in(
    conn: &Connection,
    span: &TimelineSpan,
    types: &[String],
    walk: usize,
) -> StorageResult<Option<StreamPos>> {
    let mut stmt = conn
        .prepare_cached(
            "SELECT stream_pos, type FROM events
             WHERE room_id = ?1 AND stream_pos <= ?2 AND (?3 IS NULL OR stream_pos > ?3)
             ORDER BY stream_pos DESC LIMIT ?4",
        )
        .db()?;
    let floor = span.floor.map(|p| p.0);
    let mut rows = stmt
        .query(params![
            span.room_id.as_str(),
            span.from.0,
            floor,
            limit(walk)
        ])
        .db()?;
    while let Some(row) = rows.next().db()? {
        let pos: i64 = row.get(0).db()?;
        if pos <= 0 {
            // Backfilled history, and everything older, never counts.
            return Ok(None);
        }
        let kind: String = row.get(1).db()?;
        if types.contains(&kind) {
            return Ok(Some(StreamPos(pos)));
        }
    }
    Ok(None)
}
