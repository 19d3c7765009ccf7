//! Server-side search (`POST /search`): a full-text index of the text events carry
//! ([`myelin_core::Pdu::searchable_text`]: a message's body, a room's name and topic).
//!
//! The index has one row per timeline event with such text, written by the same transaction that
//! stores the event (local sends, federated events, backfill alike), never for a rejected event,
//! and removed by the transaction that redacts the event. SQLite answers with FTS5, PostgreSQL
//! with a GIN index over `to_tsvector('english', value)`. Visibility is not decided here: the
//! caller names the rooms to look in and filters each hit through the history-visibility check.

use async_trait::async_trait;
use myelin_core::StreamPos;
use ruma::{OwnedEventId, OwnedRoomId};

use crate::StorageResult;

/// The longest search term list honoured (more words only narrow the result anyway).
pub const MAX_SEARCH_TERMS: usize = 16;

/// How results are ordered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SearchOrder {
    /// Best match first (ties: newest first).
    Rank,
    /// Newest first.
    Recent,
}

/// One page of a search.
#[derive(Debug, Clone)]
pub struct SearchQuery {
    /// Words to match, each as a prefix, all of them (already split into letters and digits:
    /// the backends quote nothing).
    pub terms: Vec<String>,
    /// The rooms to look in.
    pub rooms: Vec<OwnedRoomId>,
    /// Which texts (`content.body`, `content.name`, `content.topic`).
    pub keys: Vec<String>,
    pub order: SearchOrder,
    /// Hits to skip (rank order).
    pub offset: usize,
    /// Only events before this position (recent order).
    pub before: Option<StreamPos>,
    pub limit: usize,
}

/// An event that matched.
#[derive(Debug, Clone, PartialEq)]
pub struct SearchHit {
    pub event_id: OwnedEventId,
    pub room_id: OwnedRoomId,
    pub stream_pos: StreamPos,
    /// Higher is better; comparable only within one search.
    pub rank: f64,
}

/// Splits what a user typed into the words the index matches: runs of letters and digits,
/// lower-cased, at most [`MAX_SEARCH_TERMS`].
pub fn search_terms(input: &str) -> Vec<String> {
    input
        .split(|c: char| !c.is_alphanumeric())
        .filter(|w| !w.is_empty())
        .map(str::to_lowercase)
        .take(MAX_SEARCH_TERMS)
        .collect()
}

#[async_trait]
pub trait SearchStore {
    /// One page of the events matching every term, in the rooms and keys named.
    async fn search_events(&self, query: &SearchQuery) -> StorageResult<Vec<SearchHit>>;

    /// How many events match in all (for `count`).
    async fn count_search_results(&self, query: &SearchQuery) -> StorageResult<u64>;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn terms_are_words_without_syntax() {
        assert_eq!(
            search_terms("Hello, \"wörld\" OR NEAR(x* -y) 42"),
            ["hello", "wörld", "or", "near", "x", "y", "42"]
        );
        assert!(search_terms("  ** \"\" ()").is_empty());
        assert_eq!(search_terms(&"a ".repeat(100)).len(), MAX_SEARCH_TERMS);
    }
}
