//! `SearchStore`: full-text search over `event_search` through its GIN index on
//! `to_tsvector('english', value)` (rows written in `persist`).

use async_trait::async_trait;
use myelin_core::StreamPos;
use myelin_storage::rows::Row;
use myelin_storage::{SearchHit, SearchOrder, SearchQuery, SearchStore, StorageResult};

use crate::convert::{limit, parse_id, text_list};
use crate::PgStore;

/// Every term as a prefix, all required. The terms are letters and digits (`search_terms`), so
/// no `tsquery` syntax reaches the query.
fn ts_query(terms: &[String]) -> String {
    terms
        .iter()
        .map(|t| format!("{}:*", t.replace(|c: char| !c.is_alphanumeric(), "")))
        .collect::<Vec<_>>()
        .join(" & ")
}

/// The matches of `$1` in the rooms `$2` and keys `$3`; the expression is the index's.
const MATCHES: &str = "FROM event_search s
     WHERE to_tsvector('english', s.value) @@ to_tsquery('english', $1)
       AND s.room_id = ANY($2::TEXT[]) AND s.key = ANY($3::TEXT[])";

#[async_trait]
impl SearchStore for PgStore {
    async fn search_events(&self, query: &SearchQuery) -> StorageResult<Vec<SearchHit>> {
        if query.terms.is_empty() || query.rooms.is_empty() || query.limit == 0 {
            return Ok(Vec::new());
        }
        let expression = ts_query(&query.terms);
        let (rooms, keys) = (text_list(&query.rooms), text_list(&query.keys));
        let before = query.before.map(|p| p.0);
        let (order, offset) = match query.order {
            SearchOrder::Rank => ("score DESC, s.stream_pos DESC", query.offset),
            SearchOrder::Recent => ("s.stream_pos DESC", 0),
        };
        let sql = format!(
            "SELECT s.event_id, s.room_id, s.stream_pos,
                    (ts_rank(to_tsvector('english', s.value), to_tsquery('english', $1))
                     * 1000000)::BIGINT AS score
             {MATCHES} AND ($4::BIGINT IS NULL OR s.stream_pos < $4)
             ORDER BY {order} LIMIT $5 OFFSET $6"
        );
        let (lim, off) = (limit(query.limit), limit(offset));
        let mut conn = self.db.read().await?;
        conn.query_decode(
            &sql,
            &[&expression, &rooms, &keys, &before, &lim, &off],
            decode_hit,
        )
        .await
    }

    async fn count_search_results(&self, query: &SearchQuery) -> StorageResult<u64> {
        if query.terms.is_empty() || query.rooms.is_empty() {
            return Ok(0);
        }
        let expression = ts_query(&query.terms);
        let (rooms, keys) = (text_list(&query.rooms), text_list(&query.keys));
        let sql = format!("SELECT COUNT(*) {MATCHES}");
        let mut conn = self.db.read().await?;
        conn.query_opt_decode(&sql, &[&expression, &rooms, &keys], |row| {
            Ok(u64::try_from(row.int(0)?).unwrap_or(0))
        })
        .await
        .map(Option::unwrap_or_default)
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
