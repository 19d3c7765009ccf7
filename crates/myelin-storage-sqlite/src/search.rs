//! `SearchStore`: full-text search over `event_search` through its FTS5 index
//! (`event_search_fts`, kept in step by triggers; rows written in `persist`).

use async_trait::async_trait;
use myelin_core::StreamPos;
use myelin_storage::rows::Row;
use myelin_storage::{SearchHit, SearchOrder, SearchQuery, SearchStore, StorageResult};

use crate::convert::{json_list, limit, parse_id, query_all, query_first};
use crate::SqliteStore;

/// Every term as a quoted prefix, all required: FTS5 syntax in the terms cannot reach the
/// query (they are letters and digits already; the quotes make sure).
fn match_expression(terms: &[String]) -> String {
    terms
        .iter()
        .map(|t| format!("\"{}\"*", t.replace('"', "")))
        .collect::<Vec<_>>()
        .join(" ")
}

/// The matches of `?1` in the rooms `?2` and keys `?3` (JSON arrays).
const MATCHES: &str = "FROM event_search_fts f JOIN event_search s ON s.doc_id = f.rowid
     WHERE event_search_fts MATCH ?1
       AND s.room_id IN (SELECT value FROM json_each(?2))
       AND s.key IN (SELECT value FROM json_each(?3))";

#[async_trait]
impl SearchStore for SqliteStore {
    async fn search_events(&self, query: &SearchQuery) -> StorageResult<Vec<SearchHit>> {
        if query.terms.is_empty() || query.rooms.is_empty() || query.limit == 0 {
            return Ok(Vec::new());
        }
        let expression = match_expression(&query.terms);
        let (rooms, keys) = (json_list(&query.rooms)?, json_list(&query.keys)?);
        let before = query.before.map(|p| p.0);
        let (order, offset) = match query.order {
            // bm25 is lower for better matches; scaled to an integer rank, higher better.
            SearchOrder::Rank => ("score DESC, s.stream_pos DESC", query.offset),
            SearchOrder::Recent => ("s.stream_pos DESC", 0),
        };
        let sql = format!(
            "SELECT s.event_id, s.room_id, s.stream_pos,
                    CAST(-bm25(event_search_fts) * 1000000 AS INTEGER) AS score
             {MATCHES} AND (?4 IS NULL OR s.stream_pos < ?4)
             ORDER BY {order} LIMIT ?5 OFFSET ?6"
        );
        let (lim, off) = (limit(query.limit), limit(offset));
        self.db
            .read(move |conn| {
                query_all(
                    conn,
                    &sql,
                    rusqlite::params![expression, rooms, keys, before, lim, off],
                    decode_hit,
                )
            })
            .await
    }

    async fn count_search_results(&self, query: &SearchQuery) -> StorageResult<u64> {
        if query.terms.is_empty() || query.rooms.is_empty() {
            return Ok(0);
        }
        let expression = match_expression(&query.terms);
        let (rooms, keys) = (json_list(&query.rooms)?, json_list(&query.keys)?);
        let sql = format!("SELECT COUNT(*) {MATCHES}");
        self.db
            .read(move |conn| {
                query_first(
                    conn,
                    &sql,
                    rusqlite::params![expression, rooms, keys],
                    |row: &dyn Row| Ok(u64::try_from(row.int(0)?).unwrap_or(0)),
                )
                .map(Option::unwrap_or_default)
            })
            .await
    }
}

fn decode_hit(row: &dyn Row) -> StorageResult<SearchHit> {
    Ok(SearchHit {
        event_id: parse_id(row.text(0)?, "search hit")?,
        room_id: parse_id(row.text(1)?, "search hit room")?,
        stream_pos: StreamPos(row.int(2)?),
        rank: row.int(3)? as f64 / 1_000_000.0,
    })
}
