//! `RelationStore`: reading the relations index (`event_relations`, written in `persist`).

use async_trait::async_trait;
use myelin_core::{Relation, StreamPos};
use myelin_storage::rows::{self, Row};
use myelin_storage::{
    Direction, EventRecord, LatestEvents, RelationStore, RelationsQuery, RoomStore, StorageResult,
    ThreadEntry, ThreadSummary, TimelineSpan, REFERENCE, REPLACE, THREAD,
};
use ruma::{EventId, OwnedEventId, OwnedRoomId, OwnedUserId, RoomId, UserId};
use rusqlite::params;

use crate::convert::{json_list, limit, parse_id, query_all, query_first};
use crate::events::{query_events, EVENT_COLUMNS};
use crate::SqliteStore;

/// The events relating to `?1` (in room `?2`) down to depth `?3`, then the page of them that
/// matches the filters (`?4` relation type, `?5` event type), bounded by `?6`/`?7` and limited
/// to `?8`. `{bounds}` and `{order}` depend on the direction.
fn relations_sql(dir: Direction) -> String {
    let (bounds, order) = match dir {
        Direction::Backward => (
            "r.stream_pos <= ?6 AND (?7 IS NULL OR r.stream_pos > ?7)",
            "DESC",
        ),
        Direction::Forward => (
            "r.stream_pos > ?6 AND (?7 IS NULL OR r.stream_pos <= ?7)",
            "ASC",
        ),
    };
    format!(
        "WITH RECURSIVE related (event_id, depth) AS (
             SELECT event_id, 1 FROM event_relations WHERE parent_id = ?1 AND room_id = ?2
             UNION
             SELECT r.event_id, related.depth + 1
             FROM event_relations r JOIN related ON r.parent_id = related.event_id
             WHERE related.depth < ?3 AND r.room_id = ?2
         )
         SELECT {EVENT_COLUMNS} FROM events WHERE event_id IN (
             SELECT r.event_id FROM event_relations r
             WHERE r.event_id IN (SELECT event_id FROM related)
               AND (?4 IS NULL OR r.rel_type = ?4) AND (?5 IS NULL OR r.event_type = ?5)
               AND {bounds}
             ORDER BY r.stream_pos {order} LIMIT ?8
         )
         ORDER BY stream_pos {order}"
    )
}

#[async_trait]
impl RelationStore for SqliteStore {
    async fn relation_of(&self, event_id: &EventId) -> StorageResult<Option<Relation>> {
        let event_id = event_id.to_owned();
        self.db
            .read(move |conn| {
                query_first(
                    conn,
                    "SELECT parent_id, rel_type FROM event_relations WHERE event_id = ?1",
                    [event_id.as_str()],
                    |row: &dyn Row| {
                        Ok(Relation {
                            event_id: parse_id(row.text(0)?, "relation parent")?,
                            rel_type: row.text(1)?,
                        })
                    },
                )
            })
            .await
    }

    async fn relations(&self, query: &RelationsQuery) -> StorageResult<Vec<EventRecord>> {
        if query.limit == 0 || query.depth == 0 {
            return Ok(Vec::new());
        }
        let query = query.clone();
        self.db
            .read(move |conn| {
                query_events(
                    conn,
                    &relations_sql(query.dir),
                    params![
                        query.parent.as_str(),
                        query.room_id.as_str(),
                        query.depth,
                        query.rel_type,
                        query.event_type,
                        query.from.0,
                        query.to.map(|p| p.0),
                        limit(query.limit),
                    ],
                )
            })
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
        let (room_id, roots, user) = (room_id.to_owned(), json_list(roots)?, user.to_owned());
        self.db
            .read(move |conn| {
                // Stream positions are unique, so the newest reply is the row at `latest`.
                query_all(
                    conn,
                    "SELECT t.parent_id, t.n, r.event_id, t.mine
                     FROM (SELECT parent_id, COUNT(*) AS n, MAX(stream_pos) AS latest,
                                  MAX(CASE WHEN sender = ?4 THEN 1 ELSE 0 END) AS mine
                           FROM event_relations
                           WHERE room_id = ?1 AND rel_type = ?2
                             AND parent_id IN (SELECT value FROM json_each(?3))
                             AND (?5 IS NULL OR stream_pos <= ?5)
                           GROUP BY parent_id) t
                     JOIN event_relations r
                       ON r.room_id = ?1 AND r.rel_type = ?2 AND r.parent_id = t.parent_id
                      AND r.stream_pos = t.latest",
                    params![
                        room_id.as_str(),
                        THREAD,
                        roots,
                        user.as_str(),
                        up_to.map(|p| p.0)
                    ],
                    rows::thread_summary,
                )
            })
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
        let (room_id, participant) = (room_id.to_owned(), participant.map(ToOwned::to_owned));
        self.db
            .read(move |conn| {
                query_all(
                    conn,
                    "SELECT r.parent_id, MAX(r.stream_pos) AS latest
                     FROM event_relations r
                     JOIN events root ON root.event_id = r.parent_id AND root.room_id = r.room_id
                     WHERE r.room_id = ?1 AND r.rel_type = ?2 AND root.rejected = 0
                       AND (?3 IS NULL OR r.stream_pos <= ?3)
                     GROUP BY r.parent_id, root.sender
                     HAVING (?4 IS NULL OR MAX(r.stream_pos) < ?4)
                        AND (?5 IS NULL OR root.sender = ?5
                             OR MAX(CASE WHEN r.sender = ?5 THEN 1 ELSE 0 END) = 1)
                     ORDER BY latest DESC LIMIT ?6",
                    params![
                        room_id.as_str(),
                        THREAD,
                        up_to.map(|p| p.0),
                        before.map(|p| p.0),
                        participant.as_ref().map(|p| p.as_str()),
                        limit(limit_),
                    ],
                    rows::thread_entry,
                )
            })
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
        let (room_id, parents) = (room_id.to_owned(), json_list(parents)?);
        self.db
            .read(move |conn| {
                let sql = format!(
                    "WITH ranked AS (
                         SELECT r.parent_id AS parent, r.event_id AS edit,
                                ROW_NUMBER() OVER (PARTITION BY r.parent_id
                                    ORDER BY e.origin_server_ts DESC, e.event_id DESC) AS n
                         FROM event_relations r
                         JOIN events e ON e.event_id = r.event_id
                         JOIN events o ON o.event_id = r.parent_id
                         WHERE r.room_id = ?1 AND r.rel_type = ?2
                           AND r.parent_id IN (SELECT value FROM json_each(?3))
                           AND (?4 IS NULL OR r.stream_pos <= ?4)
                           AND o.room_id = r.room_id AND o.sender = e.sender AND o.type = e.type
                           AND o.state_key IS NULL AND e.state_key IS NULL
                     )
                     SELECT {EVENT_COLUMNS}, ranked.parent
                     FROM ranked JOIN events ON events.event_id = ranked.edit
                     WHERE ranked.n <= ?5
                     ORDER BY ranked.parent, ranked.n"
                );
                query_all(
                    conn,
                    &sql,
                    params![
                        room_id.as_str(),
                        REPLACE,
                        parents,
                        up_to.map(|p| p.0),
                        limit(per_parent)
                    ],
                    rows::with_parent,
                )
            })
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
        let (room_id, parents) = (room_id.to_owned(), json_list(parents)?);
        self.db
            .read(move |conn| {
                query_all(
                    conn,
                    "SELECT parent_id, event_id FROM (
                         SELECT parent_id, event_id, stream_pos,
                                ROW_NUMBER() OVER (PARTITION BY parent_id ORDER BY stream_pos) AS n
                         FROM event_relations
                         WHERE room_id = ?1 AND rel_type = ?2
                           AND parent_id IN (SELECT value FROM json_each(?3))
                           AND (?4 IS NULL OR stream_pos <= ?4)
                     ) WHERE n <= ?5
                     ORDER BY parent_id, stream_pos",
                    params![
                        room_id.as_str(),
                        REFERENCE,
                        parents,
                        up_to.map(|p| p.0),
                        limit(per_parent)
                    ],
                    rows::parent_and_child,
                )
            })
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
        let room_id = room_id.to_owned();
        let parents = json_list(parents)?;
        let senders = senders.map(json_list).transpose()?;
        let rel_types = rel_types.map(json_list).transpose()?;
        self.db
            .read(move |conn| {
                query_all(
                    conn,
                    "SELECT DISTINCT parent_id FROM event_relations
                     WHERE room_id = ?1 AND parent_id IN (SELECT value FROM json_each(?2))
                       AND (?3 IS NULL OR sender IN (SELECT value FROM json_each(?3)))
                       AND (?4 IS NULL OR rel_type IN (SELECT value FROM json_each(?4)))",
                    params![room_id.as_str(), parents, senders, rel_types],
                    |row: &dyn Row| parse_id(row.text(0)?, "relation parent"),
                )
            })
            .await
    }

    async fn related_parents(
        &self,
        parents: &[(OwnedRoomId, OwnedEventId)],
    ) -> StorageResult<Vec<OwnedEventId>> {
        if parents.is_empty() {
            return Ok(Vec::new());
        }
        let parents = parents.to_vec();
        // One read for every parent: a lookup in the parent index each.
        self.db
            .read(move |conn| {
                let mut found = Vec::new();
                for (room_id, parent) in &parents {
                    let related = query_first(
                        conn,
                        "SELECT 1 FROM event_relations WHERE parent_id = ?1 AND room_id = ?2",
                        params![parent.as_str(), room_id.as_str()],
                        |_| Ok(()),
                    )?;
                    if related.is_some() && !found.contains(parent) {
                        found.push(parent.clone());
                    }
                }
                Ok(found)
            })
            .await
    }

    async fn latest_events_related(
        &self,
        spans: &[TimelineSpan],
        limit_: usize,
    ) -> StorageResult<LatestEvents> {
        // Two reads: in process, a read costs no round trip.
        let timelines = self.latest_events_of(spans, limit_).await?;
        let parents: Vec<(OwnedRoomId, OwnedEventId)> = timelines
            .iter()
            .flatten()
            .map(|r| (r.pdu.room_id.clone(), r.pdu.event_id.clone()))
            .collect();
        let related = self.related_parents(&parents).await?;
        Ok(LatestEvents { timelines, related })
    }
}
