//! The cache of other servers' users' device lists: each device's signed identity keys and
//! display name, the master and self-signing keys, and the `stream_id` of the last update the
//! user's server told us about, so an `m.device_list_update` can be applied when it follows on
//! from what we hold and a gap shows as a stream ID we never saw.
//!
//! A user has a cached list or none: "stale" is "not cached", so marking a list stale deletes
//! it. Every write also records a device-list change for the user (`/sync`'s
//! `device_lists.changed`), in the same transaction.

use async_trait::async_trait;
use myelin_core::StreamPos;
use ruma::{OwnedDeviceId, OwnedUserId, ServerName, UserId};

use crate::convert::parse_id;
use crate::rows::Row;
use crate::StorageResult;

/// One cached device of a remote user.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RemoteDevice {
    pub device_id: OwnedDeviceId,
    /// The `DeviceKeys` JSON object, as the user's server gave it.
    pub keys_json: String,
    pub display_name: Option<String>,
}

/// A remote user's cached device list.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RemoteDeviceList {
    pub user_id: OwnedUserId,
    /// The user's server's stream ID this list is at.
    pub stream_id: i64,
    /// The master and self-signing keys (`CrossSigningKey` JSON), when the user has them.
    pub master_key: Option<String>,
    pub self_signing_key: Option<String>,
    /// Ordered by device ID.
    pub devices: Vec<RemoteDevice>,
    /// Our stream position when the whole list was last fetched (set by storage on
    /// [`RemoteDeviceStore::replace_remote_device_list`]; ignored there).
    pub fetched_pos: StreamPos,
}

/// One device's change, from an `m.device_list_update`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RemoteDeviceChange {
    /// The device is added or its keys or name replaced.
    Upsert(RemoteDevice),
    /// The device is gone (or has no keys any more).
    Delete(OwnedDeviceId),
}

/// Which cached cross-signing key an `m.signing_key_update` replaces.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RemoteSigningKey {
    Master,
    SelfSigning,
}

/// The `remote_device_lists` columns [`remote_list_row`] reads, in order.
pub const REMOTE_LIST_COLUMNS: &str =
    "user_id, stream_id, master_key, self_signing_key, fetched_pos";
/// The `remote_devices` columns [`remote_device_row`] reads, in order.
pub const REMOTE_DEVICE_COLUMNS: &str = "user_id, device_id, keys_json, display_name";

/// A `remote_device_lists` row, without its devices.
pub fn remote_list_row(row: &dyn Row) -> StorageResult<RemoteDeviceList> {
    Ok(RemoteDeviceList {
        user_id: parse_id(row.text(0)?, "remote device list user")?,
        stream_id: row.int(1)?,
        master_key: row.opt_text(2)?,
        self_signing_key: row.opt_text(3)?,
        devices: Vec::new(),
        fetched_pos: StreamPos(row.int(4)?),
    })
}

/// A `remote_devices` row with its user.
pub fn remote_device_row(row: &dyn Row) -> StorageResult<(OwnedUserId, RemoteDevice)> {
    Ok((
        parse_id(row.text(0)?, "remote device user")?,
        RemoteDevice {
            device_id: row.text(1)?.into(),
            keys_json: row.text(2)?,
            display_name: row.opt_text(3)?,
        },
    ))
}

/// Puts each device (ordered by user) into its user's list.
pub fn attach_devices(
    mut lists: Vec<RemoteDeviceList>,
    devices: Vec<(OwnedUserId, RemoteDevice)>,
) -> Vec<RemoteDeviceList> {
    for (user_id, device) in devices {
        if let Some(list) = lists.iter_mut().find(|l| l.user_id == user_id) {
            list.devices.push(device);
        }
    }
    lists
}

#[async_trait]
pub trait RemoteDeviceStore {
    /// The cached lists of these users (those that have one), ordered by user.
    async fn remote_device_lists(
        &self,
        user_ids: &[OwnedUserId],
    ) -> StorageResult<Vec<RemoteDeviceList>>;
    /// Replaces the user's cached list (devices, cross-signing keys, stream ID) with `list`,
    /// and records a device-list change; returns the change's position, which becomes the
    /// list's `fetched_pos`.
    async fn replace_remote_device_list(&self, list: &RemoteDeviceList)
        -> StorageResult<StreamPos>;
    /// Applies one device's change when the user's cached list is at stream ID `if_stream_id`,
    /// moving it to `stream_id`, and records a device-list change. `None` (nothing written)
    /// when the user has no cached list or it is at another stream ID.
    async fn apply_remote_device_change(
        &self,
        user_id: &UserId,
        if_stream_id: i64,
        stream_id: i64,
        change: &RemoteDeviceChange,
    ) -> StorageResult<Option<StreamPos>>;
    /// Replaces a cached cross-signing key of a user with a cached list and records a
    /// device-list change; `None` (nothing written) when the user has no cached list.
    async fn set_remote_signing_key(
        &self,
        user_id: &UserId,
        kind: RemoteSigningKey,
        key_json: &str,
    ) -> StorageResult<Option<StreamPos>>;
    /// Drops the cached lists of these users: they are fetched again before being trusted.
    async fn forget_remote_device_lists(&self, user_ids: &[OwnedUserId]) -> StorageResult<()>;
    /// Drops the cached lists of those of these users who are joined to no room that a user of
    /// `local` (this server's name) is joined to: no one here shares a room with them any more,
    /// so their server stops telling us about changes and the list would go stale. Returns
    /// those dropped, ordered by user.
    async fn forget_unshared_remote_device_lists(
        &self,
        user_ids: &[OwnedUserId],
        local: &ServerName,
    ) -> StorageResult<Vec<OwnedUserId>>;
}

impl RemoteSigningKey {
    /// The `remote_device_lists` column holding this key.
    pub fn column(self) -> &'static str {
        match self {
            RemoteSigningKey::Master => "master_key",
            RemoteSigningKey::SelfSigning => "self_signing_key",
        }
    }
}
