//! `RelationStore`: reading the relations index (`event_relations`, written in `persist`).

use async_trait::async_trait;
use myelin_core::{Relation, StreamPos};
use myelin_storage::rows::{self, Row};
use myelin_storage::{
    Direction, EventRecord, LatestEvents, RelationStore, RelationsQuery, StorageResult,
    ThreadEntry, ThreadSummary, TimelineSpan, REFERENCE, REPLACE, THREAD,
};
use ruma::{EventId, OwnedEventId, OwnedRoomId, OwnedUserId, RoomId, UserId};

use crate::convert::{limit, parse_id, text_list};
use crate::events::{query_events, EVENT_COLUMNS};
use crate::pool::Conn;
use crate::PgStore;

/// The events relating to `$1` (in room `$2`) down to depth `$3`, then the page of them that
/// matches the filters (`$4` relation type, `$5` event type), bounded by `$6`/`$7` and limited
/// to `$8`. The bounds and the order depend on the direction.
fn relations_sql(dir: Direction) -> String {
    let (bounds, order) = match dir {
        Direction::Backward => (
            "r.stream_pos <= $6 AND ($7::BIGINT IS NULL OR r.stream_pos > $7)",
            "DESC",
        ),
        Direction::Forward => (
            "r.stream_pos > $6 AND ($7::BIGINT IS NULL OR r.stream_pos <= $7)",
            "ASC",
        ),
    };
    format!(
        "WITH RECURSIVE related (event_id, depth) AS (
             SELECT event_id, 1 FROM event_relations WHERE parent_id = $1 AND room_id = $2
             UNION
             SELECT r.event_id, related.depth + 1
             FROM event_relations r JOIN related ON r.parent_id = related.event_id
             WHERE related.depth < $3 AND r.room_id = $2
         )
         SELECT {EVENT_COLUMNS} FROM events WHERE event_id IN (
             SELECT r.event_id FROM event_relations r
             WHERE r.event_id IN (SELECT event_id FROM related)
               AND ($4::TEXT IS NULL OR r.rel_type = $4) AND ($5::TEXT IS NULL OR r.event_type = $5)
               AND {bounds}
             ORDER BY r.stream_pos {order} LIMIT $8
         )
         ORDER BY stream_pos {order}"
    )
}

#[async_trait]
impl RelationStore for PgStore {
    async fn relation_of(&self, event_id: &EventId) -> StorageResult<Option<Relation>> {
        let mut conn = self.db.read().await?;
        conn.query_opt_decode(
            "SELECT parent_id, rel_type FROM event_relations WHERE event_id = $1",
            &[&event_id.as_str()],
            |row: &dyn Row| {
                Ok(Relation {
                    event_id: parse_id(row.text(0)?, "relation parent")?,
                    rel_type: row.text(1)?,
                })
            },
        )
        .await
    }

    async fn relations(&self, query: &RelationsQuery) -> StorageResult<Vec<EventRecord>> {
        if query.limit == 0 || query.depth == 0 {
            return Ok(Vec::new());
        }
        let depth = i32::try_from(query.depth).unwrap_or(i32::MAX);
        let to = query.to.map(|p| p.0);
        let mut conn = self.db.read().await?;
        query_events(
            &mut conn,
            &relations_sql(query.dir),
            &[
                &query.parent.as_str(),
                &query.room_id.as_str(),
                &depth,
                &query.rel_type,
                &query.event_type,
                &query.from.0,
                &to,
                &limit(query.limit),
            ],
        )
        .await
    }

    async fn thread_summaries(
        &self,
        room_id: &RoomId,
        roots: &[OwnedEventId],
        user: &UserId,
        up_to: Option<StreamPos>,
    ) -> StorageResult<Vec<ThreadSummary>> {
        if roots.is_empty() {
            return Ok(Vec::new());
        }
        let (roots, up_to) = (text_list(roots), up_to.map(|p| p.0));
        let mut conn = self.db.read().await?;
        // Stream positions are unique, so the newest reply is the row at `latest`.
        conn.query_decode(
            "SELECT t.parent_id, t.n, r.event_id, t.mine
             FROM (SELECT parent_id, COUNT(*) AS n, MAX(stream_pos) AS latest,
                          MAX(CASE WHEN sender = $4 THEN 1 ELSE 0 END)::BIGINT AS mine
                   FROM event_relations
                   WHERE room_id = $1 AND rel_type = $2 AND parent_id = ANY($3::TEXT[])
                     AND ($5::BIGINT IS NULL OR stream_pos <= $5)
                   GROUP BY parent_id) t
             JOIN event_relations r
               ON r.room_id = $1 AND r.rel_type = $2 AND r.parent_id = t.parent_id
              AND r.stream_pos = t.latest",
            &[&room_id.as_str(), &THREAD, &roots, &user.as_str(), &up_to],
            rows::thread_summary,
        )
        .await
    }

    async fn threads(
        &self,
        room_id: &RoomId,
        participant: Option<&UserId>,
        before: Option<StreamPos>,
        up_to: Option<StreamPos>,
        limit_: usize,
    ) -> StorageResult<Vec<ThreadEntry>> {
        if limit_ == 0 {
            return Ok(Vec::new());
        }
        let participant = participant.map(UserId::as_str);
        let (before, up_to) = (before.map(|p| p.0), up_to.map(|p| p.0));
        let mut conn = self.db.read().await?;
        conn.query_decode(
            "SELECT r.parent_id, MAX(r.stream_pos) AS latest
             FROM event_relations r
             JOIN events root ON root.event_id = r.parent_id AND root.room_id = r.room_id
             WHERE r.room_id = $1 AND r.rel_type = $2 AND NOT root.rejected
               AND ($3::BIGINT IS NULL OR r.stream_pos <= $3)
             GROUP BY r.parent_id, root.sender
             HAVING ($4::BIGINT IS NULL OR MAX(r.stream_pos) < $4)
                AND ($5::TEXT IS NULL OR root.sender = $5 OR bool_or(r.sender = $5))
             ORDER BY latest DESC LIMIT $6",
            &[
                &room_id.as_str(),
                &THREAD,
                &up_to,
                &before,
                &participant,
                &limit(limit_),
            ],
            rows::thread_entry,
        )
        .await
    }

    async fn edits(
        &self,
        room_id: &RoomId,
        parents: &[OwnedEventId],
        up_to: Option<StreamPos>,
        per_parent: usize,
    ) -> StorageResult<Vec<(OwnedEventId, EventRecord)>> {
        if parents.is_empty() || per_parent == 0 {
            return Ok(Vec::new());
        }
        let (parents, up_to) = (text_list(parents), up_to.map(|p| p.0));
        let sql = format!(
            "WITH ranked AS (
                 SELECT r.parent_id AS parent, r.event_id AS edit,
                        ROW_NUMBER() OVER (PARTITION BY r.parent_id
                            ORDER BY e.origin_server_ts DESC, e.event_id DESC) AS n
                 FROM event_relations r
                 JOIN events e ON e.event_id = r.event_id
                 JOIN events o ON o.event_id = r.parent_id
                 WHERE r.room_id = $1 AND r.rel_type = $2 AND r.parent_id = ANY($3::TEXT[])
                   AND ($4::BIGINT IS NULL OR r.stream_pos <= $4)
                   AND o.room_id = r.room_id AND o.sender = e.sender AND o.type = e.type
                   AND o.state_key IS NULL AND e.state_key IS NULL
             )
             SELECT {EVENT_COLUMNS}, ranked.parent
             FROM ranked JOIN events ON events.event_id = ranked.edit
             WHERE ranked.n <= $5
             ORDER BY ranked.parent, ranked.n"
        );
        let mut conn = self.db.read().await?;
        conn.query_decode(
            &sql,
            &[
                &room_id.as_str(),
                &REPLACE,
                &parents,
                &up_to,
                &limit(per_parent),
            ],
            rows::with_parent,
        )
        .await
    }

    async fn references(
        &self,
        room_id: &RoomId,
        parents: &[OwnedEventId],
        up_to: Option<StreamPos>,
        per_parent: usize,
    ) -> StorageResult<Vec<(OwnedEventId, OwnedEventId)>> {
        if parents.is_empty() || per_parent == 0 {
            return Ok(Vec::new());
        }
        let (parents, up_to) = (text_list(parents), up_to.map(|p| p.0));
        let mut conn = self.db.read().await?;
        conn.query_decode(
            "SELECT parent_id, event_id FROM (
                 SELECT parent_id, event_id, stream_pos,
                        ROW_NUMBER() OVER (PARTITION BY parent_id ORDER BY stream_pos) AS n
                 FROM event_relations
                 WHERE room_id = $1 AND rel_type = $2 AND parent_id = ANY($3::TEXT[])
                   AND ($4::BIGINT IS NULL OR stream_pos <= $4)
             ) AS numbered
             WHERE n <= $5
             ORDER BY parent_id, stream_pos",
            &[
                &room_id.as_str(),
                &REFERENCE,
                &parents,
                &up_to,
                &limit(per_parent),
            ],
            rows::parent_and_child,
        )
        .await
    }

    async fn parents_related_by(
        &self,
        room_id: &RoomId,
        parents: &[OwnedEventId],
        senders: Option<&[OwnedUserId]>,
        rel_types: Option<&[String]>,
    ) -> StorageResult<Vec<OwnedEventId>> {
        if parents.is_empty() {
            return Ok(Vec::new());
        }
        let parents = text_list(parents);
        let senders = senders.map(text_list);
        let rel_types = rel_types.map(text_list);
        let mut conn = self.db.read().await?;
        conn.query_decode(
            "SELECT DISTINCT parent_id FROM event_relations
             WHERE room_id = $1 AND parent_id = ANY($2::TEXT[])
               AND ($3::TEXT[] IS NULL OR sender = ANY($3))
               AND ($4::TEXT[] IS NULL OR rel_type = ANY($4))",
            &[&room_id.as_str(), &parents, &senders, &rel_types],
            |row: &dyn Row| parse_id(row.text(0)?, "relation parent"),
        )
        .await
    }

    async fn related_parents(
        &self,
        parents: &[(OwnedRoomId, OwnedEventId)],
    ) -> StorageResult<Vec<OwnedEventId>> {
        if parents.is_empty() {
            return Ok(Vec::new());
        }
        let rooms: Vec<&str> = parents.iter().map(|(r, _)| r.as_str()).collect();
        let ids: Vec<&str> = parents.iter().map(|(_, e)| e.as_str()).collect();
        let mut conn = self.db.read().await?;
        conn.query_decode(
            "SELECT DISTINCT p.parent_id
             FROM unnest($1::TEXT[], $2::TEXT[]) AS p(room_id, parent_id)
             WHERE EXISTS (SELECT 1 FROM event_relations r
                           WHERE r.parent_id = p.parent_id AND r.room_id = p.room_id)",
            &[&rooms, &ids],
            |row: &dyn Row| parse_id(row.text(0)?, "relation parent"),
        )
        .await
    }

    async fn latest_events_related(
        &self,
        spans: &[TimelineSpan],
        limit_: usize,
    ) -> StorageResult<LatestEvents> {
        let mut conn = self.db.read().await?;
        latest_events(&mut conn, spans, limit_).await
    }
}

/// Each span's newest `limit_` events (see `RoomStore::latest_events_of`), each with whether
/// anything in its room relates to it: one statement for every room (each round trip costs
/// more than the rows). Each span's events come from a backward scan of the
/// `(room_id, stream_pos)` index, the floor a range bound (see `latest_of_types`), tagged with
/// the span's number; the relation check is a lookup in the parent index per event read.
pub(crate) async fn latest_events(
    conn: &mut Conn,
    spans: &[TimelineSpan],
    limit_: usize,
) -> StorageResult<LatestEvents> {
    let mut out = LatestEvents {
        timelines: vec![Vec::new(); spans.len()],
        related: Vec::new(),
    };
    if spans.is_empty() || limit_ == 0 {
        return Ok(out);
    }
    let rooms: Vec<&str> = spans.iter().map(|s| s.room_id.as_str()).collect();
    let froms: Vec<i64> = spans.iter().map(|s| s.from.0).collect();
    let floors: Vec<Option<i64>> = spans.iter().map(|s| s.floor.map(|p| p.0)).collect();
    let sql = format!(
        "SELECT w.*, r.i
         FROM unnest($1::TEXT[], $2::BIGINT[], $3::BIGINT[])
              WITH ORDINALITY AS r(room_id, from_pos, floor_pos, i)
         JOIN LATERAL (
             SELECT {EVENT_COLUMNS}, EXISTS (
                 SELECT 1 FROM event_relations x
                 WHERE x.parent_id = events.event_id AND x.room_id = events.room_id)
             FROM events
             WHERE room_id = r.room_id AND stream_pos <= r.from_pos
               AND stream_pos > COALESCE(r.floor_pos, -9223372036854775808)
             ORDER BY stream_pos DESC LIMIT $4
         ) w ON TRUE
         ORDER BY r.i, w.stream_pos DESC"
    );
    let found = conn
        .query_decode(
            &sql,
            &[&rooms, &froms, &floors, &limit(limit_)],
            |row: &dyn Row| Ok((row.int(9)?, row.flag(8)?, rows::event(row)?)),
        )
        .await?;
    for (i, related, record) in found {
        if related && !out.related.contains(&record.pdu.event_id) {
            out.related.push(record.pdu.event_id.clone());
        }
        // `WITH ORDINALITY` counts from 1.
        let slot = usize::try_from(i - 1)
            .ok()
            .and_then(|i| out.timelines.get_mut(i));
        if let Some(events) = slot {
            events.push(record);
        }
    }
    Ok(out)
}
