//! End-to-end encryption bookkeeping: device identity keys, one-time and fallback keys,
//! cross-signing keys, the device-list change stream and queued to-device messages.
//!
//! Key material is opaque JSON to storage: the service checks its shape and signatures, and
//! storage keeps the text exactly as given so signatures over it stay valid.
//!
//! Device deletion (`AccountStore::delete_devices`, `delete_all_devices`, `deactivate_user`)
//! also removes the devices' identity, one-time and fallback keys and queued to-device
//! messages, and records a device-list change for the user, in the same transaction.

use std::collections::BTreeMap;

use async_trait::async_trait;
use myelin_core::StreamPos;
use ruma::{OwnedDeviceId, OwnedUserId, UserId};

use crate::StorageResult;

/// A device's signed identity keys (`DeviceKeys` in the spec), as uploaded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeviceKeysRecord {
    pub user_id: OwnedUserId,
    pub device_id: OwnedDeviceId,
    /// The `DeviceKeys` JSON object, as uploaded (with any signatures added later).
    pub keys_json: String,
    /// The device's display name (from the devices table), for federation answers.
    pub display_name: Option<String>,
}

/// A one-time or fallback key handed out by a claim.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClaimedKey {
    pub user_id: OwnedUserId,
    pub device_id: OwnedDeviceId,
    /// `algorithm:key_id`, e.g. `signed_curve25519:AAAAHg`.
    pub key_id: String,
    pub key_json: String,
}

/// One claim request: a key of `algorithm` for the device.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyClaim {
    pub user_id: OwnedUserId,
    pub device_id: OwnedDeviceId,
    pub algorithm: String,
}

/// Cross-signing key usage.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum CrossSigningKind {
    Master,
    SelfSigning,
    UserSigning,
}

impl CrossSigningKind {
    pub fn as_str(self) -> &'static str {
        match self {
            CrossSigningKind::Master => "master",
            CrossSigningKind::SelfSigning => "self_signing",
            CrossSigningKind::UserSigning => "user_signing",
        }
    }

    pub fn parse(s: &str) -> Option<CrossSigningKind> {
        match s {
            "master" => Some(CrossSigningKind::Master),
            "self_signing" => Some(CrossSigningKind::SelfSigning),
            "user_signing" => Some(CrossSigningKind::UserSigning),
            _ => None,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CrossSigningKeyRecord {
    pub user_id: OwnedUserId,
    pub kind: CrossSigningKind,
    /// The `CrossSigningKey` JSON object.
    pub key_json: String,
}

/// A to-device message for one device of a local user.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ToDeviceMessage {
    pub recipient: OwnedUserId,
    pub device_id: OwnedDeviceId,
    pub sender: OwnedUserId,
    pub event_type: String,
    /// The message content, a JSON object.
    pub content_json: String,
}

/// A client's `PUT /sendToDevice/{event_type}/{txn_id}` from one of its devices: the key that
/// makes a retried request a no-op.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ToDeviceTxn {
    pub user_id: OwnedUserId,
    pub device_id: OwnedDeviceId,
    pub event_type: String,
    pub txn_id: String,
}

/// A queued to-device message with its stream position.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueuedToDevice {
    pub stream_pos: StreamPos,
    pub message: ToDeviceMessage,
}

#[async_trait]
pub trait KeyStore {
    /// Sets (or replaces) a device's identity keys and records a device-list change for the
    /// user, in one transaction; returns the change's position, or `None` (nothing written)
    /// when the device does not exist.
    async fn set_device_keys(
        &self,
        user_id: &UserId,
        device_id: &str,
        keys_json: &str,
    ) -> StorageResult<Option<StreamPos>>;
    /// Identity keys of every existing device of these users that has uploaded keys, ordered by
    /// user then device.
    async fn device_keys(&self, user_ids: &[OwnedUserId]) -> StorageResult<Vec<DeviceKeysRecord>>;

    /// Adds one-time keys (`algorithm:key_id` → key JSON) to a device. A key ID already stored
    /// for the device is kept unchanged (an upload retried after a lost answer is harmless).
    async fn add_one_time_keys(
        &self,
        user_id: &UserId,
        device_id: &str,
        keys: &[(String, String)],
    ) -> StorageResult<()>;
    /// Unclaimed one-time keys of a device, counted per algorithm.
    async fn one_time_key_counts(
        &self,
        user_id: &UserId,
        device_id: &str,
    ) -> StorageResult<BTreeMap<String, u64>>;
    /// Sets fallback keys (`algorithm:key_id` → key JSON): each replaces the device's fallback
    /// key of the same algorithm, and starts out unused.
    async fn set_fallback_keys(
        &self,
        user_id: &UserId,
        device_id: &str,
        keys: &[(String, String)],
    ) -> StorageResult<()>;
    /// Algorithms for which the device has a fallback key that no claim has returned yet.
    async fn unused_fallback_key_types(
        &self,
        user_id: &UserId,
        device_id: &str,
    ) -> StorageResult<Vec<String>>;
    /// Claims, for each request, one one-time key of the algorithm (removed, oldest upload
    /// first) or, when none is left, the device's fallback key of that algorithm (kept, marked
    /// used). Requests that find neither are left out of the answer. One transaction, so a
    /// one-time key is never handed out twice.
    async fn claim_keys(&self, claims: &[KeyClaim]) -> StorageResult<Vec<ClaimedKey>>;

    /// Sets (or replaces) cross-signing keys of a user and records a device-list change, in one
    /// transaction; returns the change's position.
    async fn set_cross_signing_keys(
        &self,
        user_id: &UserId,
        keys: &[(CrossSigningKind, String)],
    ) -> StorageResult<StreamPos>;
    async fn cross_signing_keys(
        &self,
        user_ids: &[OwnedUserId],
    ) -> StorageResult<Vec<CrossSigningKeyRecord>>;

    /// Records that a user's device list changed (a remote user's, told by their server);
    /// returns the change's position.
    async fn mark_device_list_changed(&self, user_id: &UserId) -> StorageResult<StreamPos>;
    /// Users whose device list changed in `(since, up_to]`, each once.
    async fn device_list_changes(
        &self,
        since: StreamPos,
        up_to: StreamPos,
    ) -> StorageResult<Vec<OwnedUserId>>;
    /// Moves a local user's chain of `m.device_list_update`s on by one update: its stream ID is
    /// `at_least` or one past the previous update's, whichever is greater, so IDs grow per user
    /// even when several updates share a stream position. Returns the previous update's ID (none
    /// for the user's first) and the new one.
    async fn next_device_list_stream_id(
        &self,
        user_id: &UserId,
        at_least: i64,
    ) -> StorageResult<(Option<i64>, i64)>;
    /// The stream ID of a local user's latest `m.device_list_update`; none before the first.
    async fn device_list_stream_id(&self, user_id: &UserId) -> StorageResult<Option<i64>>;

    /// Queues to-device messages (all at one new stream position, in one transaction); returns
    /// that position. Messages for devices that do not exist are dropped.
    async fn queue_to_device(&self, messages: &[ToDeviceMessage]) -> StorageResult<StreamPos>;
    /// A client's `sendToDevice` request, once per [`ToDeviceTxn`], in one transaction: records
    /// the transaction, queues `local` messages (at one new stream position, as
    /// [`KeyStore::queue_to_device`]) and each `(destination, EDU JSON)` of `remote` in the
    /// federation outbox. Returns `false`, queueing nothing, when the transaction was already
    /// recorded.
    async fn queue_to_device_once(
        &self,
        txn: &ToDeviceTxn,
        local: &[ToDeviceMessage],
        remote: &[(ruma::OwnedServerName, String)],
    ) -> StorageResult<bool>;
    /// The device's queued messages with positions in `(after, up_to]`, oldest first, at most
    /// `limit`.
    async fn to_device_messages(
        &self,
        user_id: &UserId,
        device_id: &str,
        after: StreamPos,
        up_to: StreamPos,
        limit: usize,
    ) -> StorageResult<Vec<QueuedToDevice>>;
    /// Deletes the device's messages at positions up to `up_to` (the client acknowledged them).
    async fn delete_to_device(
        &self,
        user_id: &UserId,
        device_id: &str,
        up_to: StreamPos,
    ) -> StorageResult<()>;
}
