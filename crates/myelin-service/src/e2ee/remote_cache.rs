//! The cache of other servers' users' device lists (`RemoteDeviceStore`), kept as Synapse keeps
//! it: a list is fetched whole from the user's server (`GET /user/devices/{userId}`, with its
//! `stream_id` and the master and self-signing keys), then patched by each
//! `m.device_list_update` whose `prev_id`s are all the stream ID we hold. An update that does
//! not follow on (a gap: we missed one) drops the list and fetches it again in the background;
//! `m.signing_key_update` replaces the cached cross-signing keys.
//!
//! A list is trusted only while its user shares a room with the local user asking, and only if
//! they have shared one since before the list was fetched (a member entry older than the fetch):
//! when a remote user or server (re)joins a room we share, what we hold may have missed updates
//! their server did not send us meanwhile, so it is fetched again before use.
//!
//! A list whose user no longer shares any room with a user of ours is dropped
//! (`Rooms::forget_unshared_device_lists`, after the leave that ended it): their server stops
//! telling us about changes, so a later query fetches it afresh.

use std::collections::{BTreeMap, HashSet};
use std::sync::{Arc, Mutex};

use myelin_core::StreamPos;
use myelin_federation::Method;
use myelin_storage::{RemoteDevice, RemoteDeviceChange, RemoteDeviceList, RemoteSigningKey};
use ruma::{OwnedDeviceId, OwnedUserId, UserId};
use serde_json::{Map, Value};

use crate::{Context, ServiceError, ServiceResult};

/// The most devices cached for one user: a list longer than this is not cached (the user's
/// server is asked every time), as Synapse does.
pub(crate) const MAX_REMOTE_DEVICES: usize = 1_000;
/// The largest key object (device keys or a cross-signing key) cached, serialised.
const MAX_KEY_BYTES: usize = 16 * 1024;
/// The longest device display name cached; longer names are cut.
const MAX_DISPLAY_NAME_CHARS: usize = 256;
/// The most background re-fetches running at once; a gap beyond them leaves the list dropped,
/// to be fetched by the next key query.
const MAX_RESYNCS_IN_FLIGHT: usize = 64;

/// What to do with an `m.device_list_update` for a user.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum UpdateStep {
    /// We hold no list for the user: only note that it changed (a query fetches it).
    NotCached,
    /// The update is not newer than the list we hold.
    AlreadySeen,
    /// Every `prev_id` is the stream ID we hold (or there is none): patch the list.
    Apply,
    /// A `prev_id` we never saw: we missed an update, so the list is fetched again.
    Resync,
}

/// The decision for an update at `stream_id` following `prev_ids`, given the stream ID of the
/// list we hold.
pub(crate) fn update_step(cached: Option<i64>, stream_id: i64, prev_ids: &[i64]) -> UpdateStep {
    let Some(cached) = cached else {
        return UpdateStep::NotCached;
    };
    if stream_id <= cached {
        return UpdateStep::AlreadySeen;
    }
    if prev_ids.iter().all(|prev| *prev == cached) {
        UpdateStep::Apply
    } else {
        UpdateStep::Resync
    }
}

/// The key object under `field` if it is an object about `user_id` (and `device_id`, for
/// device keys) of bounded size, serialised.
fn bounded_key(value: Option<&Value>, user_id: &UserId, device_id: Option<&str>) -> Option<String> {
    let object = value?.as_object()?;
    if object.get("user_id").and_then(Value::as_str) != Some(user_id.as_str()) {
        return None;
    }
    if device_id.is_some() && object.get("device_id").and_then(Value::as_str) != device_id {
        return None;
    }
    let json = Value::Object(object.clone()).to_string();
    (json.len() <= MAX_KEY_BYTES).then_some(json)
}

fn display_name(value: Option<&Value>) -> Option<String> {
    let name = value?.as_str()?;
    Some(name.chars().take(MAX_DISPLAY_NAME_CHARS).collect())
}

/// One device's change as an `m.device_list_update` (or a `/user/devices` entry) describes it:
/// its keys and name, or its removal (also when it has no usable keys any more).
pub(crate) fn device_change(user_id: &UserId, content: &Value) -> Option<RemoteDeviceChange> {
    let device_id = content.get("device_id")?.as_str()?;
    if device_id.is_empty() || device_id.len() > 255 {
        return None;
    }
    let deleted = content.get("deleted").and_then(Value::as_bool) == Some(true);
    let keys = bounded_key(content.get("keys"), user_id, Some(device_id));
    Some(match keys {
        Some(keys_json) if !deleted => RemoteDeviceChange::Upsert(RemoteDevice {
            device_id: device_id.into(),
            keys_json,
            display_name: display_name(content.get("device_display_name")),
        }),
        _ => RemoteDeviceChange::Delete(device_id.into()),
    })
}

/// The `prev_id`s of an update; a malformed list counts as one unknown ID (a resync).
pub(crate) fn prev_ids(content: &Value) -> Vec<i64> {
    match content.get("prev_id") {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::Array(ids)) => ids.iter().map(|id| id.as_i64().unwrap_or(-1)).collect(),
        Some(_) => vec![-1],
    }
}

/// The cross-signing keys an `m.signing_key_update` (or a `/user/devices` answer) carries.
pub(crate) fn signing_keys(user_id: &UserId, content: &Value) -> Vec<(RemoteSigningKey, String)> {
    [
        (RemoteSigningKey::Master, "master_key"),
        (RemoteSigningKey::SelfSigning, "self_signing_key"),
    ]
    .into_iter()
    .filter_map(|(kind, field)| Some((kind, bounded_key(content.get(field), user_id, None)?)))
    .collect()
}

/// The list a `/user/devices` answer gives, checked: about `user_id`, with a stream ID and at
/// most [`MAX_REMOTE_DEVICES`] devices.
pub(crate) fn parse_user_devices(
    user_id: &UserId,
    body: &Value,
) -> ServiceResult<RemoteDeviceList> {
    let bad = |why: &str| ServiceError::Remote(format!("devices of {user_id}: {why}"));
    if body.get("user_id").and_then(Value::as_str) != Some(user_id.as_str()) {
        return Err(bad("the answer is about another user"));
    }
    let stream_id = body
        .get("stream_id")
        .and_then(Value::as_i64)
        .ok_or_else(|| bad("no stream_id"))?;
    let entries = body
        .get("devices")
        .and_then(Value::as_array)
        .ok_or_else(|| bad("no devices"))?;
    if entries.len() > MAX_REMOTE_DEVICES {
        return Err(bad("too many devices to cache"));
    }
    let mut devices: BTreeMap<OwnedDeviceId, RemoteDevice> = BTreeMap::new();
    for entry in entries {
        if let Some(RemoteDeviceChange::Upsert(device)) = device_change(user_id, entry) {
            devices.insert(device.device_id.clone(), device);
        }
    }
    let mut list = RemoteDeviceList {
        user_id: user_id.to_owned(),
        stream_id,
        master_key: None,
        self_signing_key: None,
        devices: devices.into_values().collect(),
        fetched_pos: StreamPos::ZERO,
    };
    for (kind, key) in signing_keys(user_id, body) {
        match kind {
            RemoteSigningKey::Master => list.master_key = Some(key),
            RemoteSigningKey::SelfSigning => list.self_signing_key = Some(key),
        }
    }
    Ok(list)
}

/// Fetches a remote user's whole device list from their server and caches it (recording a
/// device-list change); returns it with its `fetched_pos`.
pub(crate) async fn fetch_device_list(
    ctx: &Context,
    user_id: &UserId,
) -> ServiceResult<RemoteDeviceList> {
    let path = myelin_federation::path::user_devices(user_id);
    let answer = ctx
        .federation_request(Method::GET, user_id.server_name(), &path, None)
        .await?;
    let body = Value::Object(answer.into_iter().map(|(k, v)| (k, v.into())).collect());
    let mut list = parse_user_devices(user_id, &body)?;
    list.fetched_pos = ctx.storage.replace_remote_device_list(&list).await?;
    Ok(list)
}

/// The users whose lists are being fetched again in the background, so one gap starts one fetch.
#[derive(Default)]
pub(crate) struct Resyncs(Mutex<HashSet<OwnedUserId>>);

impl Resyncs {
    /// Claims the user's re-fetch; `false` when one is running or too many are.
    fn start(&self, user_id: &UserId) -> bool {
        let Ok(mut running) = self.0.lock() else {
            return false;
        };
        running.len() < MAX_RESYNCS_IN_FLIGHT && running.insert(user_id.to_owned())
    }

    fn finish(&self, user_id: &UserId) {
        if let Ok(mut running) = self.0.lock() {
            running.remove(user_id);
        }
    }
}

/// Fetches the user's list again in a task of its own (an inbound transaction never waits on
/// another server), then wakes the local users sharing a room with them.
pub(crate) fn resync_in_background(
    ctx: Arc<Context>,
    rooms: Arc<crate::Rooms>,
    resyncs: Arc<Resyncs>,
    user_id: OwnedUserId,
) {
    if !resyncs.start(&user_id) {
        return;
    }
    tokio::spawn(async move {
        match fetch_device_list(&ctx, &user_id).await {
            Ok(_) => {
                if let Err(e) = rooms.notify_sharers(&user_id).await {
                    tracing::info!(%user_id, error = %e, "waking sharers after a resync");
                }
            }
            Err(e) => tracing::info!(%user_id, error = %e, "device list resync failed"),
        }
        resyncs.finish(&user_id);
    });
}

/// A cached list as `/keys/query` entries: the wanted devices (all when none is named) with
/// `unsigned.device_display_name`, and the cross-signing keys.
pub(crate) fn cached_answer(
    list: &RemoteDeviceList,
    wanted: &[OwnedDeviceId],
) -> (Map<String, Value>, Option<Value>, Option<Value>) {
    let mut devices = Map::new();
    for device in &list.devices {
        if !wanted.is_empty() && !wanted.contains(&device.device_id) {
            continue;
        }
        let Ok(mut keys) = serde_json::from_str::<Value>(&device.keys_json) else {
            continue;
        };
        if let (Some(name), Some(object)) = (&device.display_name, keys.as_object_mut()) {
            let unsigned = object
                .entry("unsigned")
                .or_insert_with(|| Value::Object(Map::new()));
            if let Some(unsigned) = unsigned.as_object_mut() {
                unsigned.insert("device_display_name".into(), Value::String(name.clone()));
            }
        }
        devices.insert(device.device_id.to_string(), keys);
    }
    let parse = |key: &Option<String>| key.as_deref().and_then(|k| serde_json::from_str(k).ok());
    (
        devices,
        parse(&list.master_key),
        parse(&list.self_signing_key),
    )
}
