//! `RoomStore`: events, state, timelines, memberships and aliases.

use async_trait::async_trait;
use myelin_core::StreamPos;
use myelin_storage::rows::{self, MEMBERSHIP_COLUMNS, ROOM_INFO_COLUMNS};
use myelin_storage::{
    BackfilledEvent, Direction, EventRecord, MembershipRecord, NewEvent, NewOutlier, Persisted,
    RoomInfo, RoomStore, SnapshotId, StateKey, StateMap, StorageResult, TimelineSpan,
};
use ruma::{EventId, OwnedEventId, OwnedRoomId, OwnedUserId, RoomAliasId, RoomId, UserId};

use crate::convert::{get, limit, now_ms, parse_id, text_list, to_i64, to_u64};
use crate::events::{query_events, stored_events, EVENT_COLUMNS};
use crate::{persist, state, PgStore};

#[async_trait]
impl RoomStore for PgStore {
    async fn persist_event(&self, event: NewEvent) -> StorageResult<Persisted> {
        let mut conn = self.db.write().await?;
        let result = persist::persist_event(&mut conn, event).await;
        conn.finish(result).await
    }

    async fn persist_events(&self, events: Vec<NewEvent>) -> StorageResult<Vec<Persisted>> {
        let mut conn = self.db.write().await?;
        let result = persist::persist_events(&mut conn, events).await;
        conn.finish(result).await
    }

    async fn persist_with_outliers(
        &self,
        outliers: Vec<NewOutlier>,
        events: Vec<NewEvent>,
    ) -> StorageResult<Vec<Persisted>> {
        let mut conn = self.db.write().await?;
        let result = async {
            // Outliers first: an event of the batch that is among them moves to the timeline.
            let outliers = outliers.iter().map(|o| (&o.pdu, o.status));
            persist::insert_outliers(&mut conn, outliers).await?;
            persist::persist_events(&mut conn, events).await
        }
        .await;
        conn.finish(result).await
    }

    async fn persist_backfilled(
        &self,
        events: Vec<BackfilledEvent>,
    ) -> StorageResult<Vec<StreamPos>> {
        let mut conn = self.db.write().await?;
        let result = persist::persist_backfilled(&mut conn, events).await;
        conn.finish(result).await
    }

    async fn room_info(&self, room_id: &RoomId) -> StorageResult<Option<RoomInfo>> {
        let mut conn = self.db.read().await?;
        let sql = format!("SELECT {ROOM_INFO_COLUMNS} FROM rooms WHERE room_id = $1");
        conn.query_opt_decode(&sql, &[&room_id.as_str()], |row| {
            rows::room_info(room_id.to_owned(), row)
        })
        .await
    }

    async fn get_event(&self, event_id: &EventId) -> StorageResult<Option<EventRecord>> {
        let mut conn = self.db.read().await?;
        Ok(stored_events(&mut conn, &[event_id.as_str()]).await?.pop())
    }

    async fn get_events(&self, ids: &[OwnedEventId]) -> StorageResult<Vec<EventRecord>> {
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let ids = text_list(ids);
        let mut conn = self.db.read().await?;
        stored_events(&mut conn, &ids).await
    }

    async fn event_for_txn(
        &self,
        user_id: &UserId,
        device_id: &str,
        txn_id: &str,
    ) -> StorageResult<Option<OwnedEventId>> {
        let mut conn = self.db.read().await?;
        let row = conn
            .query_opt(
                "SELECT event_id FROM event_txns WHERE user_id = $1 AND device_id = $2 AND txn_id = $3",
                &[&user_id.as_str(), &device_id, &txn_id],
            )
            .await?;
        row.map(|row| parse_id(get::<String>(&row, 0)?, "event ID"))
            .transpose()
    }

    async fn current_state(&self, room_id: &RoomId) -> StorageResult<StateMap> {
        let mut conn = self.db.read().await?;
        state::current_state(&mut conn, room_id.as_str()).await
    }

    async fn state_at_snapshot(&self, snapshot: SnapshotId) -> StorageResult<StateMap> {
        let mut conn = self.db.read().await?;
        // Snapshots never change once committed, so reading the chain and its entries in two
        // statements is consistent.
        state::load_state(&mut conn, snapshot).await
    }

    async fn state_entries_at(
        &self,
        snapshot: SnapshotId,
        keys: &[StateKey],
    ) -> StorageResult<StateMap> {
        let mut conn = self.db.read().await?;
        state::load_entries(&mut conn, snapshot, keys).await
    }

    async fn forward_extremities(&self, room_id: &RoomId) -> StorageResult<Vec<OwnedEventId>> {
        let mut conn = self.db.read().await?;
        let rows = conn
            .query(
                "SELECT event_id FROM forward_extremities WHERE room_id = $1",
                &[&room_id.as_str()],
            )
            .await?;
        rows.iter()
            .map(|row| parse_id(get::<String>(row, 0)?, "forward extremity"))
            .collect()
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
        let to = to.map(|p| p.0);
        let sql = match dir {
            Direction::Backward => format!(
                "SELECT {EVENT_COLUMNS} FROM events
                 WHERE room_id = $1 AND stream_pos <= $2 AND ($3::BIGINT IS NULL OR stream_pos > $3)
                 ORDER BY stream_pos DESC LIMIT $4"
            ),
            Direction::Forward => format!(
                "SELECT {EVENT_COLUMNS} FROM events
                 WHERE room_id = $1 AND stream_pos > $2 AND ($3::BIGINT IS NULL OR stream_pos <= $3)
                 ORDER BY stream_pos ASC LIMIT $4"
            ),
        };
        let mut conn = self.db.read().await?;
        query_events(
            &mut conn,
            &sql,
            &[&room_id.as_str(), &from.0, &to, &limit(limit_)],
        )
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
        let rooms: Vec<&str> = spans.iter().map(|s| s.room_id.as_str()).collect();
        let froms: Vec<i64> = spans.iter().map(|s| s.from.0).collect();
        let floors: Vec<Option<i64>> = spans.iter().map(|s| s.floor.map(|p| p.0)).collect();
        // One statement for every room: each span's newest `walk` events (keyed, positions and
        // types only), of which the newest positive one of the types; in the order given. The
        // floor is a range bound (not `IS NULL OR`), so that the walk is a backward scan of the
        // `(room_id, stream_pos)` index that stops at the first bump event, rather than a bitmap
        // scan of the room's every event and a sort (13 ms instead of 1 on a first request).
        // `-9223372036854775808` is `i64::MIN`: no floor.
        let sql = "SELECT r.i, b.stream_pos
             FROM unnest($1::TEXT[], $2::BIGINT[], $3::BIGINT[])
                  WITH ORDINALITY AS r(room_id, from_pos, floor_pos, i)
             LEFT JOIN LATERAL (
                 SELECT w.stream_pos FROM (
                     SELECT stream_pos, type FROM events
                     WHERE room_id = r.room_id AND stream_pos <= r.from_pos
                       AND stream_pos > COALESCE(r.floor_pos, -9223372036854775808)
                     ORDER BY stream_pos DESC LIMIT $4
                 ) w
                 WHERE w.stream_pos > 0 AND w.type = ANY($5::TEXT[])
                 ORDER BY w.stream_pos DESC LIMIT 1
             ) b ON TRUE
             ORDER BY r.i";
        let mut conn = self.db.read().await?;
        let found = conn
            .query(sql, &[&rooms, &froms, &floors, &limit(walk), &types])
            .await?;
        found
            .iter()
            .map(|row| Ok(get::<Option<i64>>(row, 1)?.map(StreamPos)))
            .collect()
    }

    async fn latest_events_of(
        &self,
        spans: &[TimelineSpan],
        limit_: usize,
    ) -> StorageResult<Vec<Vec<EventRecord>>> {
        let mut conn = self.db.read().await?;
        let found = crate::relations::latest_events(&mut conn, spans, limit_).await?;
        Ok(found.timelines)
    }

    async fn event_near_timestamp(
        &self,
        room_id: &RoomId,
        ts: u64,
        dir: Direction,
    ) -> StorageResult<Option<(OwnedEventId, u64)>> {
        let ts = to_i64(ts, "timestamp")?;
        let sql = match dir {
            Direction::Forward => {
                "SELECT event_id, origin_server_ts FROM events
                 WHERE room_id = $1 AND origin_server_ts >= $2 AND NOT rejected
                 ORDER BY origin_server_ts, stream_pos LIMIT 1"
            }
            Direction::Backward => {
                "SELECT event_id, origin_server_ts FROM events
                 WHERE room_id = $1 AND origin_server_ts <= $2 AND NOT rejected
                 ORDER BY origin_server_ts DESC, stream_pos DESC LIMIT 1"
            }
        };
        let mut conn = self.db.read().await?;
        let row = conn.query_opt(sql, &[&room_id.as_str(), &ts]).await?;
        row.map(|row| {
            Ok((
                parse_id(get::<String>(&row, 0)?, "event ID")?,
                to_u64(get(&row, 1)?, "timestamp")?,
            ))
        })
        .transpose()
    }

    async fn rooms_with_events_between(
        &self,
        after: StreamPos,
        up_to: StreamPos,
    ) -> StorageResult<Vec<OwnedRoomId>> {
        let mut conn = self.db.read().await?;
        let rows = conn
            .query(
                "SELECT DISTINCT room_id FROM events WHERE stream_pos > $1 AND stream_pos <= $2",
                &[&after.0, &up_to.0],
            )
            .await?;
        rows.iter()
            .map(|row| parse_id(get::<String>(row, 0)?, "room ID"))
            .collect()
    }

    async fn memberships_of_user(&self, user_id: &UserId) -> StorageResult<Vec<MembershipRecord>> {
        let mut conn = self.db.read().await?;
        let sql = format!(
            "SELECT {MEMBERSHIP_COLUMNS} FROM room_memberships WHERE user_id = $1 ORDER BY stream_pos"
        );
        conn.query_decode(&sql, &[&user_id.as_str()], rows::membership)
            .await
    }

    async fn room_members(&self, room_id: &RoomId) -> StorageResult<Vec<MembershipRecord>> {
        let mut conn = self.db.read().await?;
        let sql = format!(
            "SELECT {MEMBERSHIP_COLUMNS} FROM room_memberships
             WHERE room_id = $1 ORDER BY user_id COLLATE \"C\""
        );
        conn.query_decode(&sql, &[&room_id.as_str()], rows::membership)
            .await
    }

    async fn forget_room(&self, user_id: &UserId, room_id: &RoomId) -> StorageResult<()> {
        let mut conn = self.db.write().await?;
        let result = conn
            .execute(
                "UPDATE room_memberships SET forgotten = TRUE WHERE room_id = $1 AND user_id = $2",
                &[&room_id.as_str(), &user_id.as_str()],
            )
            .await
            .map(drop);
        conn.finish(result).await
    }

    async fn create_alias(
        &self,
        alias: &RoomAliasId,
        room_id: &RoomId,
        creator: &UserId,
    ) -> StorageResult<bool> {
        let mut conn = self.db.write().await?;
        let result = conn
            .execute(
                "INSERT INTO room_aliases (alias, room_id, creator) VALUES ($1, $2, $3)
                 ON CONFLICT (alias) DO NOTHING",
                &[&alias.as_str(), &room_id.as_str(), &creator.as_str()],
            )
            .await
            .map(|inserted| inserted == 1);
        conn.finish(result).await
    }

    async fn resolve_alias(
        &self,
        alias: &RoomAliasId,
    ) -> StorageResult<Option<(OwnedRoomId, OwnedUserId)>> {
        let mut conn = self.db.read().await?;
        let row = conn
            .query_opt(
                "SELECT room_id, creator FROM room_aliases WHERE alias = $1",
                &[&alias.as_str()],
            )
            .await?;
        row.map(|row| {
            Ok((
                parse_id(get::<String>(&row, 0)?, "alias room")?,
                parse_id(get::<String>(&row, 1)?, "alias creator")?,
            ))
        })
        .transpose()
    }

    async fn delete_alias(&self, alias: &RoomAliasId) -> StorageResult<bool> {
        let mut conn = self.db.write().await?;
        let result = conn
            .execute(
                "DELETE FROM room_aliases WHERE alias = $1",
                &[&alias.as_str()],
            )
            .await
            .map(|deleted| deleted == 1);
        conn.finish(result).await
    }

    async fn aliases_of_room(&self, room_id: &RoomId) -> StorageResult<Vec<String>> {
        let mut conn = self.db.read().await?;
        let rows = conn
            .query(
                "SELECT alias FROM room_aliases WHERE room_id = $1 ORDER BY alias COLLATE \"C\"",
                &[&room_id.as_str()],
            )
            .await?;
        rows.iter().map(|row| get(row, 0)).collect()
    }

    async fn set_room_published(&self, room_id: &RoomId, published: bool) -> StorageResult<()> {
        let mut conn = self.db.write().await?;
        let result = if published {
            conn.execute(
                "INSERT INTO room_directory (room_id, published_ms) VALUES ($1, $2)
                 ON CONFLICT (room_id) DO NOTHING",
                &[&room_id.as_str(), &now_ms()],
            )
            .await
        } else {
            conn.execute(
                "DELETE FROM room_directory WHERE room_id = $1",
                &[&room_id.as_str()],
            )
            .await
        }
        .map(drop);
        conn.finish(result).await
    }

    async fn is_room_published(&self, room_id: &RoomId) -> StorageResult<bool> {
        let mut conn = self.db.read().await?;
        let row = conn
            .query_opt(
                "SELECT 1 FROM room_directory WHERE room_id = $1",
                &[&room_id.as_str()],
            )
            .await?;
        Ok(row.is_some())
    }

    async fn published_rooms(&self) -> StorageResult<Vec<OwnedRoomId>> {
        let mut conn = self.db.read().await?;
        let rows = conn
            .query(
                "SELECT room_id FROM room_directory ORDER BY room_id COLLATE \"C\"",
                &[],
            )
            .await?;
        rows.iter()
            .map(|row| parse_id(get::<String>(row, 0)?, "published room"))
            .collect()
    }

    async fn current_stream_pos(&self) -> StorageResult<StreamPos> {
        // Writers are serialised and bump the counter in their own transaction, so the committed
        // counter is a position up to which everything is committed.
        let mut conn = self.db.read().await?;
        let row = conn
            .query_one("SELECT pos FROM stream_counter WHERE id = 0", &[])
            .await?;
        Ok(StreamPos(get(&row, 0)?))
    }
}
