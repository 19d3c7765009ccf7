//! Server-side search (`POST /search`, the `room_events` category): full-text matches from the
//! storage index, kept only where the searcher may see the event (the history-visibility check
//! and their ignore list, through [`History`]), then decorated as asked: context, profiles,
//! room state, groupings.

mod decorate;
mod request;
#[cfg(test)]
mod tests;

use std::collections::HashMap;
use std::sync::Arc;

use myelin_core::StreamPos;
use myelin_storage::{search_terms, EventRecord, SearchHit, SearchOrder, SearchQuery};
use ruma::{OwnedRoomId, RoomId};
use serde_json::{json, Value};

use crate::{accounts::Authed, context::Context, History, Rooms, ServiceError, ServiceResult};

use request::Checked;
pub use request::{EventContextRequest, RoomEventsCriteria};

/// Results per page when the filter names no limit, and the most a page holds.
const DEFAULT_LIMIT: usize = 10;
const MAX_LIMIT: usize = 50;
/// Index rows read per round while filling a page (hidden events are skipped), and rounds.
const ROWS_PER_ROUND: usize = 100;
const MAX_ROUNDS: usize = 10;

pub struct Search {
    ctx: Arc<Context>,
    rooms: Arc<Rooms>,
    history: Arc<History>,
}

/// One page of visible hits, and where the next page starts (if anything is left).
struct Page {
    hits: Vec<(SearchHit, EventRecord)>,
    next: Option<Cursor>,
}

/// `next_batch`: rows of the index already read (rank order), or the position to continue
/// below (recent order).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Cursor {
    Offset(usize),
    Before(StreamPos),
}

impl Cursor {
    fn parse(token: &str) -> Option<Cursor> {
        if let Some(n) = token.strip_prefix("r") {
            return n.parse().ok().map(Cursor::Offset);
        }
        token
            .strip_prefix("p")?
            .parse()
            .ok()
            .map(|p| Cursor::Before(StreamPos(p)))
    }

    fn token(self) -> String {
        match self {
            Cursor::Offset(n) => format!("r{n}"),
            Cursor::Before(p) => format!("p{}", p.0),
        }
    }
}

impl Search {
    pub fn new(ctx: Arc<Context>, rooms: Arc<Rooms>, history: Arc<History>) -> Search {
        Search {
            ctx,
            rooms,
            history,
        }
    }

    /// `POST /search` with `room_events`; `next_batch` from an earlier page.
    pub async fn search_room_events(
        &self,
        authed: &Authed,
        criteria: RoomEventsCriteria,
        next_batch: Option<&str>,
    ) -> ServiceResult<Value> {
        let criteria = criteria.validated()?;
        let cursor = match next_batch {
            Some(t) => Some(
                Cursor::parse(t)
                    .ok_or_else(|| ServiceError::InvalidParam("Invalid next_batch".into()))?,
            ),
            None => None,
        };
        let terms = search_terms(&criteria.search_term);
        let rooms = self.rooms_to_search(authed, &criteria).await?;
        let limit = criteria
            .filter
            .limit
            .map_or(DEFAULT_LIMIT, |l| usize::try_from(l).unwrap_or(MAX_LIMIT))
            .clamp(1, MAX_LIMIT);
        let mut query = SearchQuery {
            terms: terms.clone(),
            rooms,
            keys: criteria.keys.clone(),
            order: criteria.order,
            offset: 0,
            before: None,
            limit: ROWS_PER_ROUND,
        };
        match cursor {
            Some(Cursor::Offset(n)) if criteria.order == SearchOrder::Rank => query.offset = n,
            Some(Cursor::Before(p)) if criteria.order == SearchOrder::Recent => {
                query.before = Some(p)
            }
            Some(_) => {
                return Err(ServiceError::InvalidParam(
                    "next_batch belongs to another order_by".into(),
                ))
            }
            None => {}
        }
        let count = self.ctx.storage.count_search_results(&query).await?;
        let page = self.visible_page(authed, &criteria, query, limit).await?;
        let mut body = self.decorate(authed, &criteria, &page.hits).await?;
        body["count"] = json!(count);
        body["highlights"] = json!(terms);
        if let Some(next) = page.next {
            body["next_batch"] = json!(next.token());
        }
        Ok(json!({ "search_categories": { "room_events": body } }))
    }

    /// The rooms the user is joined to, narrowed by the filter's `rooms` / `not_rooms`.
    async fn rooms_to_search(
        &self,
        authed: &Authed,
        criteria: &Checked,
    ) -> ServiceResult<Vec<OwnedRoomId>> {
        Ok(self
            .ctx
            .storage
            .memberships_of_user(&authed.user_id)
            .await?
            .into_iter()
            .filter(|m| m.membership == "join")
            .map(|m| m.room_id)
            .filter(|r| criteria.filter.allows_room(r.as_str()))
            .collect())
    }

    /// Reads index rows round by round, keeping those the user may see and the filter allows,
    /// until `limit` are found (the cursor then points just past the last one) or the index has
    /// no more.
    async fn visible_page(
        &self,
        authed: &Authed,
        criteria: &Checked,
        mut query: SearchQuery,
        limit: usize,
    ) -> ServiceResult<Page> {
        let mut found: Vec<(SearchHit, EventRecord)> = Vec::new();
        for _ in 0..MAX_ROUNDS {
            let rows = self.ctx.storage.search_events(&query).await?;
            let read = rows.len();
            let lowest = rows.iter().map(|h| h.stream_pos).min();
            for (numbered, record) in self.visible(authed, rows).await? {
                let kind = record.pdu.kind.to_string();
                if !criteria.filter.allows(&kind, record.pdu.sender.as_str()) {
                    continue;
                }
                let pos = numbered.hit.stream_pos;
                found.push((numbered.hit, record));
                if found.len() == limit {
                    let next = match query.order {
                        SearchOrder::Rank => Cursor::Offset(query.offset + numbered.consumed + 1),
                        SearchOrder::Recent => Cursor::Before(pos),
                    };
                    return Ok(Page {
                        hits: found,
                        next: Some(next),
                    });
                }
            }
            if read < query.limit {
                break;
            }
            query.offset += read;
            query.before = lowest.or(query.before);
        }
        Ok(Page {
            hits: found,
            next: None,
        })
    }

    /// The rows whose events the user may see, in the order read, each with its index in the
    /// round (so a page that fills up knows how many rows it used).
    async fn visible(
        &self,
        authed: &Authed,
        rows: Vec<SearchHit>,
    ) -> ServiceResult<Vec<(Numbered, EventRecord)>> {
        let ids: Vec<_> = rows.iter().map(|h| h.event_id.clone()).collect();
        let records = self.ctx.storage.get_events(&ids).await?;
        let mut by_room: HashMap<OwnedRoomId, Vec<EventRecord>> = HashMap::new();
        for record in records {
            by_room
                .entry(record.pdu.room_id.clone())
                .or_default()
                .push(record);
        }
        let mut visible = HashMap::new();
        for (room, records) in by_room {
            for record in self.visible_in(authed, &room, records).await? {
                visible.insert(record.pdu.event_id.clone(), record);
            }
        }
        Ok(rows
            .into_iter()
            .enumerate()
            .filter_map(|(i, hit)| {
                let record = visible.remove(&hit.event_id)?;
                Some((Numbered { hit, consumed: i }, record))
            })
            .collect())
    }

    async fn visible_in(
        &self,
        authed: &Authed,
        room: &RoomId,
        records: Vec<EventRecord>,
    ) -> ServiceResult<Vec<EventRecord>> {
        self.history
            .visible_records(&authed.user_id, room, records)
            .await
    }
}

/// A hit and its place in the round that read it.
struct Numbered {
    hit: SearchHit,
    consumed: usize,
}
