//! Per-user data outside the room DAG: account data, receipts, presence, filters.

use async_trait::async_trait;
use myelin_core::StreamPos;
use ruma::{OwnedEventId, OwnedRoomId, OwnedUserId, RoomId, UserId};

use crate::StorageResult;

#[derive(Debug, Clone, PartialEq)]
pub struct AccountDataRecord {
    /// `None` for global account data.
    pub room_id: Option<OwnedRoomId>,
    pub data_type: String,
    pub content: serde_json::Value,
    pub stream_pos: StreamPos,
}

#[derive(Debug, Clone, PartialEq)]
pub struct ReceiptRecord {
    pub room_id: OwnedRoomId,
    /// `m.read` or `m.read.private`.
    pub receipt_type: String,
    pub user_id: OwnedUserId,
    /// `None` for unthreaded receipts; `main` or a thread root otherwise.
    pub thread_id: Option<String>,
    pub event_id: OwnedEventId,
    pub ts: u64,
    pub stream_pos: StreamPos,
}

#[derive(Debug, Clone, PartialEq)]
pub struct PresenceRecord {
    pub user_id: OwnedUserId,
    /// `online`, `offline` or `unavailable`.
    pub state: String,
    pub status_msg: Option<String>,
    pub last_active_ms: u64,
    pub stream_pos: StreamPos,
}

/// What a report is about.
#[derive(Debug, Clone, PartialEq)]
pub enum ReportTarget {
    Event {
        room_id: OwnedRoomId,
        event_id: OwnedEventId,
    },
    Room(OwnedRoomId),
    User(OwnedUserId),
}

/// A user's report of content, for the server's administrators.
#[derive(Debug, Clone, PartialEq)]
pub struct ReportRecord {
    pub reporter: OwnedUserId,
    pub target: ReportTarget,
    pub reason: Option<String>,
    /// `-100` (most offensive) to `0`, for event reports that give one.
    pub score: Option<i64>,
    pub created_ms: u64,
}

#[async_trait]
pub trait UserDataStore {
    /// Sets account data (an empty object deletes it, as the spec allows); returns its position.
    async fn set_account_data(
        &self,
        user_id: &UserId,
        room_id: Option<&RoomId>,
        data_type: &str,
        content: &serde_json::Value,
    ) -> StorageResult<StreamPos>;
    async fn get_account_data(
        &self,
        user_id: &UserId,
        room_id: Option<&RoomId>,
        data_type: &str,
    ) -> StorageResult<Option<serde_json::Value>>;
    /// Account data (global and per room) changed after `since`.
    async fn account_data_since(
        &self,
        user_id: &UserId,
        since: StreamPos,
    ) -> StorageResult<Vec<AccountDataRecord>>;

    /// Replaces the user's receipt of this type and thread in the room; returns its position.
    async fn set_receipt(&self, receipt: ReceiptRecord) -> StorageResult<StreamPos>;
    /// Receipts in the given rooms changed after `since`.
    async fn receipts_since(
        &self,
        room_ids: &[OwnedRoomId],
        since: StreamPos,
    ) -> StorageResult<Vec<ReceiptRecord>>;

    async fn set_presence(
        &self,
        user_id: &UserId,
        state: &str,
        status_msg: Option<&str>,
        now_ms: u64,
    ) -> StorageResult<StreamPos>;
    async fn get_presence(&self, user_id: &UserId) -> StorageResult<Option<PresenceRecord>>;
    /// Presence of the given users changed after `since`.
    async fn presence_since(
        &self,
        user_ids: &[OwnedUserId],
        since: StreamPos,
    ) -> StorageResult<Vec<PresenceRecord>>;

    /// Stores a filter; returns its ID (decimal, per user).
    async fn create_filter(
        &self,
        user_id: &UserId,
        filter: &serde_json::Value,
    ) -> StorageResult<String>;
    async fn get_filter(
        &self,
        user_id: &UserId,
        filter_id: &str,
    ) -> StorageResult<Option<serde_json::Value>>;
    /// Keeps a report.
    async fn add_report(&self, report: ReportRecord) -> StorageResult<()>;
    /// The newest reports first, at most `limit`.
    async fn reports(&self, limit: usize) -> StorageResult<Vec<ReportRecord>>;
}
