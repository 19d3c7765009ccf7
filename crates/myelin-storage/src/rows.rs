//! How the storage records map to table rows, shared by the backends: the column lists their
//! queries select, decoding those rows into records, and the values that stand for "none" in key
//! columns.
//!
//! Both backends store the same tables with the same columns, so a row of the same `SELECT`
//! decodes the same way in either dialect. Each backend reads its driver's rows through [`Row`];
//! only the SQL around these columns differs.

use myelin_core::{Pdu, StreamPos};
use ruma::{OwnedEventId, OwnedRoomId, OwnedUserId, RoomId, UserId};
use serde_json::value::RawValue;

use crate::convert::{corrupt, opt_to_u64, parse_id, parse_json, parse_opt_id, to_u64};
use crate::{
    AccountDataRecord, BackedUpKey, BackupVersionRecord, CrossSigningKeyRecord, CrossSigningKind,
    DeviceKeysRecord, DeviceRecord, EventRecord, MediaContent, MediaRecord, MembershipRecord,
    OutboxContent, OutboxEntry, OutlierStatus, PresenceRecord, PusherRecord, QueuedPush,
    QueuedToDevice, ReceiptRecord, RemoteMediaRecord, ReportRecord, ReportTarget, RoomInfo,
    StateKey, StorageResult, ThreadEntry, ThreadSummary, ThumbnailRecord, ToDeviceMessage,
    TokenOwner, UserRecord,
};

/// Typed access to the columns of one result row, by index. Each backend implements it for its
/// driver's row, with its own error for a column that does not hold the asked-for type.
pub trait Row {
    fn text(&self, idx: usize) -> StorageResult<String>;
    fn opt_text(&self, idx: usize) -> StorageResult<Option<String>>;
    fn int(&self, idx: usize) -> StorageResult<i64>;
    fn opt_int(&self, idx: usize) -> StorageResult<Option<i64>>;
    /// A flag column: 0/1 in SQLite, `BOOLEAN` in PostgreSQL.
    fn flag(&self, idx: usize) -> StorageResult<bool>;
}

/// The `events` columns [`event`] reads, in order.
pub const EVENT_COLUMNS: &str =
    "event_id, json, rejected, stream_pos, state_snapshot, txn_device, txn_id, redacted_by";

/// A timeline event row ([`EVENT_COLUMNS`]).
pub fn event(row: &dyn Row) -> StorageResult<EventRecord> {
    let mut pdu = pdu(row)?;
    pdu.rejected = row.flag(2)?;
    let txn = match (row.opt_text(5)?, row.opt_text(6)?) {
        (Some(device), Some(txn_id)) => Some((device.into(), txn_id)),
        _ => None,
    };
    Ok(EventRecord {
        pdu,
        stream_pos: StreamPos(row.int(3)?),
        state_snapshot: row.int(4)?,
        txn,
        redacted_by: parse_opt_id(row.opt_text(7)?, "redacted_by")?,
        outlier: None,
    })
}

/// An `event_outliers` row (its first columns `event_id, json`) with its `status`: an event with
/// no place in the stream and no snapshot.
pub fn outlier(row: &dyn Row, status: &str) -> StorageResult<EventRecord> {
    let status = OutlierStatus::parse(status)
        .ok_or_else(|| corrupt("outlier status", format!("unknown status {status:?}")))?;
    let mut pdu = pdu(row)?;
    pdu.rejected = status == OutlierStatus::Rejected;
    Ok(EventRecord {
        pdu,
        stream_pos: StreamPos::ZERO,
        state_snapshot: 0,
        txn: None,
        redacted_by: None,
        outlier: Some(status),
    })
}

/// The PDU stored in columns 0 (`event_id`) and 1 (`json`).
fn pdu(row: &dyn Row) -> StorageResult<Pdu> {
    let event_id = parse_id(row.text(0)?, "event ID")?;
    let json = RawValue::from_string(row.text(1)?).map_err(|e| corrupt("event JSON", e))?;
    Pdu::from_json(event_id, json).map_err(|e| corrupt("event", e))
}

/// A `type, state_key, event_id` row: one entry of a room state.
pub fn state_entry(row: &dyn Row) -> StorageResult<(StateKey, ruma::OwnedEventId)> {
    Ok((
        (row.text(0)?, row.text(1)?),
        parse_id(row.text(2)?, "state event ID")?,
    ))
}

/// A row of [`EVENT_COLUMNS`] followed by the ID of the event it relates to (column 8).
pub fn with_parent(row: &dyn Row) -> StorageResult<(OwnedEventId, EventRecord)> {
    Ok((parse_id(row.text(8)?, "relation parent")?, event(row)?))
}

/// A `parent_id, event_id` row of the relations index.
pub fn parent_and_child(row: &dyn Row) -> StorageResult<(OwnedEventId, OwnedEventId)> {
    Ok((
        parse_id(row.text(0)?, "relation parent")?,
        parse_id(row.text(1)?, "relating event")?,
    ))
}

/// A `root, reply count, newest reply, whether the user replied (0/1)` row.
pub fn thread_summary(row: &dyn Row) -> StorageResult<ThreadSummary> {
    Ok(ThreadSummary {
        root: parse_id(row.text(0)?, "thread root")?,
        count: to_u64(row.int(1)?, "thread reply count")?,
        latest: parse_id(row.text(2)?, "latest thread reply")?,
        participated: row.int(3)? != 0,
    })
}

/// A `root, position of the newest reply` row.
pub fn thread_entry(row: &dyn Row) -> StorageResult<ThreadEntry> {
    Ok(ThreadEntry {
        root: parse_id(row.text(0)?, "thread root")?,
        latest_pos: StreamPos(row.int(1)?),
    })
}

/// The `rooms` columns [`room_info`] reads, in order.
pub const ROOM_INFO_COLUMNS: &str = "version, creator, current_snapshot";

pub fn room_info(room_id: OwnedRoomId, row: &dyn Row) -> StorageResult<RoomInfo> {
    Ok(RoomInfo {
        room_id,
        version: parse_id(row.text(0)?, "room version")?,
        creator: parse_id(row.text(1)?, "room creator")?,
        current_snapshot: row.opt_int(2)?,
    })
}

/// The `room_memberships` columns [`membership`] reads, in order.
pub const MEMBERSHIP_COLUMNS: &str =
    "room_id, user_id, membership, event_id, stream_pos, forgotten, joined_pos";

pub fn membership(row: &dyn Row) -> StorageResult<MembershipRecord> {
    Ok(MembershipRecord {
        room_id: parse_id(row.text(0)?, "membership room")?,
        user_id: parse_id(row.text(1)?, "membership user")?,
        membership: row.text(2)?,
        event_id: parse_id(row.text(3)?, "membership event")?,
        stream_pos: StreamPos(row.int(4)?),
        forgotten: row.flag(5)?,
        joined_pos: row.opt_int(6)?.map(StreamPos),
    })
}

/// The `users` columns [`user`] reads, in order.
pub const USER_COLUMNS: &str =
    "password_hash, is_admin, deactivated, created_ms, displayname, avatar_url, is_guest, locked, suspended";

pub fn user(user_id: OwnedUserId, row: &dyn Row) -> StorageResult<UserRecord> {
    Ok(UserRecord {
        user_id,
        password_hash: row.opt_text(0)?,
        is_admin: row.flag(1)?,
        deactivated: row.flag(2)?,
        created_ms: to_u64(row.int(3)?, "created_ms")?,
        displayname: row.opt_text(4)?,
        avatar_url: row.opt_text(5)?,
        is_guest: row.flag(6)?,
        locked: row.flag(7)?,
        suspended: row.flag(8)?,
    })
}

/// The `devices` columns [`device`] reads, in order.
pub const DEVICE_COLUMNS: &str = "user_id, device_id, display_name, last_seen_ms, last_seen_ip";

pub fn device(row: &dyn Row) -> StorageResult<DeviceRecord> {
    Ok(DeviceRecord {
        user_id: parse_id(row.text(0)?, "device user")?,
        device_id: row.text(1)?.into(),
        display_name: row.opt_text(2)?,
        last_seen_ms: opt_to_u64(row.opt_int(3)?, "last_seen_ms")?,
        last_seen_ip: row.opt_text(4)?,
    })
}

/// The `users` flags a token lookup reads with the token.
#[derive(Debug, Clone, Copy, Default)]
pub struct AccountFlags {
    pub is_guest: bool,
    pub locked: bool,
    pub suspended: bool,
}

impl AccountFlags {
    /// Reads `is_guest, locked, suspended` from columns `first..first + 3`.
    pub fn read(row: &dyn Row, first: usize) -> StorageResult<AccountFlags> {
        Ok(AccountFlags {
            is_guest: row.flag(first)?,
            locked: row.flag(first + 1)?,
            suspended: row.flag(first + 2)?,
        })
    }
}

/// The owner of an access token, from its `access_tokens` columns.
pub fn token_owner(
    user_id: String,
    device_id: String,
    expires_at_ms: Option<i64>,
    flags: AccountFlags,
) -> StorageResult<TokenOwner> {
    Ok(TokenOwner {
        user_id: parse_id(user_id, "token user")?,
        device_id: device_id.into(),
        expires_at_ms: opt_to_u64(expires_at_ms, "expires_at_ms")?,
        is_guest: flags.is_guest,
        locked: flags.locked,
        suspended: flags.suspended,
    })
}

/// The `room_id` key column of `account_data`: global account data has the empty string (a key
/// column cannot be NULL).
pub fn account_data_room(room_id: Option<&RoomId>) -> &str {
    room_id.map(RoomId::as_str).unwrap_or_default()
}

/// The `account_data` columns [`account_data`] reads, in order.
pub const ACCOUNT_DATA_COLUMNS: &str = "room_id, type, content, stream_pos";

pub fn account_data(row: &dyn Row) -> StorageResult<AccountDataRecord> {
    let room_id = row.text(0)?;
    Ok(AccountDataRecord {
        room_id: if room_id.is_empty() {
            None
        } else {
            Some(parse_id(room_id, "account data room")?)
        },
        data_type: row.text(1)?,
        content: parse_json(&row.text(2)?, "account data")?,
        stream_pos: StreamPos(row.int(3)?),
    })
}

/// The `thread_id` key column of `receipts`: an unthreaded receipt has the empty string.
pub fn receipt_thread(thread_id: Option<&str>) -> &str {
    thread_id.unwrap_or("")
}

/// The `receipts` columns [`receipt`] reads, in order.
pub const RECEIPT_COLUMNS: &str =
    "room_id, receipt_type, user_id, thread_id, event_id, ts, stream_pos";

pub fn receipt(row: &dyn Row) -> StorageResult<ReceiptRecord> {
    let thread_id = row.text(3)?;
    Ok(ReceiptRecord {
        room_id: parse_id(row.text(0)?, "receipt room")?,
        receipt_type: row.text(1)?,
        user_id: parse_id(row.text(2)?, "receipt user")?,
        thread_id: if thread_id.is_empty() {
            None
        } else {
            Some(thread_id)
        },
        event_id: parse_id(row.text(4)?, "receipt event")?,
        ts: to_u64(row.int(5)?, "receipt ts")?,
        stream_pos: StreamPos(row.int(6)?),
    })
}

/// The `presence` columns [`presence`] reads, in order.
pub const PRESENCE_COLUMNS: &str = "user_id, state, status_msg, last_active_ms, stream_pos";

pub fn presence(row: &dyn Row) -> StorageResult<PresenceRecord> {
    Ok(PresenceRecord {
        user_id: parse_id(row.text(0)?, "presence user")?,
        state: row.text(1)?,
        status_msg: row.opt_text(2)?,
        last_active_ms: to_u64(row.int(3)?, "last_active_ms")?,
        stream_pos: StreamPos(row.int(4)?),
    })
}

/// The stored `filter_id` a client's filter ID names, if it can name one: only canonical
/// decimal IDs were handed out ("01" or "+1" are not such IDs).
pub fn filter_id(filter_id: &str) -> Option<i64> {
    filter_id
        .parse::<i64>()
        .ok()
        .filter(|id| *id >= 0 && id.to_string() == filter_id)
}

/// The `reports` columns [`report`] reads, in order.
pub const REPORT_COLUMNS: &str =
    "reporter, room_id, event_id, target_user, reason, score, created_ms";

/// A `reports` row ([`REPORT_COLUMNS`]).
pub fn report(row: &dyn Row) -> StorageResult<ReportRecord> {
    let target = match (row.opt_text(1)?, row.opt_text(2)?, row.opt_text(3)?) {
        (Some(room), Some(event), _) => ReportTarget::Event {
            room_id: parse_id(room, "reported room")?,
            event_id: parse_id(event, "reported event")?,
        },
        (Some(room), None, _) => ReportTarget::Room(parse_id(room, "reported room")?),
        (None, _, Some(user)) => ReportTarget::User(parse_id(user, "reported user")?),
        _ => {
            return Err(crate::StorageError::Corrupt(
                "a report without a target".into(),
            ))
        }
    };
    Ok(ReportRecord {
        reporter: parse_id(row.text(0)?, "reporter")?,
        target,
        reason: row.opt_text(4)?,
        score: row.opt_int(5)?,
        created_ms: to_u64(row.int(6)?, "created_ms")?,
    })
}

/// The `(room_id, event_id, target_user)` columns of a report's target.
pub fn report_target_columns(
    target: &ReportTarget,
) -> (Option<String>, Option<String>, Option<String>) {
    match target {
        ReportTarget::Event { room_id, event_id } => {
            (Some(room_id.to_string()), Some(event_id.to_string()), None)
        }
        ReportTarget::Room(room_id) => (Some(room_id.to_string()), None, None),
        ReportTarget::User(user_id) => (None, None, Some(user_id.to_string())),
    }
}

/// The columns of `key_backup_versions v` that [`backup_version`] reads, in order, with the
/// version's key count.
pub const BACKUP_VERSION_COLUMNS: &str = "v.version, v.algorithm, v.auth_data, v.etag,
     (SELECT COUNT(*) FROM key_backup_keys k WHERE k.user_id = v.user_id AND k.version = v.version)";

pub fn backup_version(row: &dyn Row) -> StorageResult<BackupVersionRecord> {
    Ok(BackupVersionRecord {
        version: to_u64(row.int(0)?, "backup version")?,
        algorithm: row.text(1)?,
        auth_data: row.text(2)?,
        etag: to_u64(row.int(3)?, "backup etag")?,
        count: to_u64(row.int(4)?, "backup key count")?,
    })
}

/// The `key_backup_keys` columns [`backed_up_key`] reads, in order.
pub const BACKED_UP_KEY_COLUMNS: &str =
    "room_id, session_id, first_message_index, forwarded_count, is_verified, session_data";

pub fn backed_up_key(row: &dyn Row) -> StorageResult<BackedUpKey> {
    Ok(BackedUpKey {
        room_id: parse_id(row.text(0)?, "backed-up key room ID")?,
        session_id: row.text(1)?,
        first_message_index: to_u64(row.int(2)?, "first_message_index")?,
        forwarded_count: to_u64(row.int(3)?, "forwarded_count")?,
        is_verified: row.flag(4)?,
        session_data: row.text(5)?,
    })
}

/// A `media` row, read in the order of [`crate::MEDIA_COLUMNS`].
pub fn media(row: &dyn Row) -> StorageResult<MediaRecord> {
    let content = match (row.opt_int(6)?, row.opt_text(7)?) {
        (Some(size), Some(sha256)) => Some(MediaContent {
            content_type: row.opt_text(4)?,
            filename: row.opt_text(5)?,
            size: to_u64(size, "media size")?,
            sha256,
        }),
        _ => None,
    };
    Ok(MediaRecord {
        media_id: row.text(0)?,
        uploader: parse_id(row.text(1)?, "media uploader")?,
        created_ms: to_u64(row.int(2)?, "media created_ms")?,
        unused_expires_ms: opt_to_u64(row.opt_int(3)?, "media unused_expires_ms")?,
        content,
    })
}

/// A `remote_media` row, read in the order of [`crate::REMOTE_MEDIA_COLUMNS`].
pub fn remote_media(row: &dyn Row) -> StorageResult<RemoteMediaRecord> {
    Ok(RemoteMediaRecord {
        origin: row.text(0)?,
        media_id: row.text(1)?,
        content: MediaContent {
            content_type: row.opt_text(2)?,
            filename: row.opt_text(3)?,
            size: to_u64(row.int(4)?, "remote media size")?,
            sha256: row.text(5)?,
        },
        fetched_ms: to_u64(row.int(6)?, "remote media fetched_ms")?,
        last_access_ms: to_u64(row.int(7)?, "remote media last_access_ms")?,
    })
}

/// A `media_thumbnails` row, read in the order of [`crate::THUMBNAIL_COLUMNS`].
pub fn thumbnail(row: &dyn Row) -> StorageResult<ThumbnailRecord> {
    let dimension =
        |idx| u32::try_from(row.int(idx)?).map_err(|e| corrupt("thumbnail dimension", e));
    Ok(ThumbnailRecord {
        width: dimension(0)?,
        height: dimension(1)?,
        method: row.text(2)?,
        animated: row.flag(3)?,
        content_type: row.text(4)?,
        size: to_u64(row.int(5)?, "thumbnail size")?,
        sha256: row.text(6)?,
    })
}

/// The `federation_outbox` columns [`outbox_entry`] reads, in order.
pub const OUTBOX_COLUMNS: &str = "id, destination, event_id, edu, created_ms";

pub fn outbox_entry(row: &dyn Row) -> StorageResult<OutboxEntry> {
    let id = row.int(0)?;
    let content = match (row.opt_text(2)?, row.opt_text(3)?) {
        (Some(event_id), None) => OutboxContent::Pdu(parse_id(event_id, "outbox event ID")?),
        (None, Some(edu)) => OutboxContent::Edu(edu),
        _ => {
            return Err(corrupt(
                "outbox row",
                format!("row {id} must carry exactly one of a PDU and an EDU"),
            ))
        }
    };
    Ok(OutboxEntry {
        id,
        destination: row.text(1)?,
        content,
        created_ms: to_u64(row.int(4)?, "outbox created_ms")?,
    })
}

/// The answer of `FederationStore::outbox_peek` from a destination's oldest rows (in id order):
/// at most `max_pdus` PDUs and `max_edus` EDUs, stopping before the first row over either limit.
/// Rows after that are not decoded.
pub fn outbox_batch(
    entries: impl IntoIterator<Item = StorageResult<OutboxEntry>>,
    max_pdus: usize,
    max_edus: usize,
) -> StorageResult<Vec<OutboxEntry>> {
    let (mut pdus, mut edus) = (0, 0);
    let mut out = Vec::new();
    for entry in entries {
        let entry = entry?;
        let (count, max) = match entry.content {
            OutboxContent::Pdu(_) => (&mut pdus, max_pdus),
            OutboxContent::Edu(_) => (&mut edus, max_edus),
        };
        // Stop rather than skip: rows go out in order.
        if *count == max {
            break;
        }
        *count += 1;
        out.push(entry);
    }
    Ok(out)
}

/// The `algorithm` column of a one-time or fallback key: the part of `algorithm:key_id` before
/// the colon.
pub fn key_algorithm(key_id: &str) -> &str {
    key_id.split_once(':').map_or(key_id, |(alg, _)| alg)
}

/// An `algorithm, COUNT(*)` row of one-time keys.
pub fn key_count(row: &dyn Row) -> StorageResult<(String, u64)> {
    Ok((row.text(0)?, to_u64(row.int(1)?, "key count")?))
}

/// The columns [`device_keys`] reads, in order, from `device_keys k JOIN devices d`.
pub const DEVICE_KEYS_COLUMNS: &str = "k.user_id, k.device_id, k.keys_json, d.display_name";

pub fn device_keys(row: &dyn Row) -> StorageResult<DeviceKeysRecord> {
    Ok(DeviceKeysRecord {
        user_id: parse_id(row.text(0)?, "device keys user")?,
        device_id: row.text(1)?.into(),
        keys_json: row.text(2)?,
        display_name: row.opt_text(3)?,
    })
}

/// The `cross_signing_keys` columns [`cross_signing_key`] reads, in order.
pub const CROSS_SIGNING_COLUMNS: &str = "user_id, kind, key_json";

pub fn cross_signing_key(row: &dyn Row) -> StorageResult<CrossSigningKeyRecord> {
    let (user_id, kind) = (row.text(0)?, row.text(1)?);
    Ok(CrossSigningKeyRecord {
        user_id: parse_id(user_id, "cross-signing user")?,
        kind: CrossSigningKind::parse(&kind).ok_or_else(|| corrupt("cross-signing kind", &kind))?,
        key_json: row.text(2)?,
    })
}

/// The `to_device_messages` columns [`to_device`] reads, in order.
pub const TO_DEVICE_COLUMNS: &str = "stream_pos, sender, event_type, content_json";

/// A queued message for `recipient`'s device `device_id`.
pub fn to_device(
    recipient: &UserId,
    device_id: &str,
    row: &dyn Row,
) -> StorageResult<QueuedToDevice> {
    Ok(QueuedToDevice {
        stream_pos: StreamPos(row.int(0)?),
        message: ToDeviceMessage {
            recipient: recipient.to_owned(),
            device_id: device_id.into(),
            sender: parse_id(row.text(1)?, "to-device sender")?,
            event_type: row.text(2)?,
            content_json: row.text(3)?,
        },
    })
}

/// Destinations read back from the outbox. They were written from typed server names, so a
/// value that no longer parses can only be damage; it is left out rather than sent to.
pub fn server_names(stored: Vec<String>) -> Vec<ruma::OwnedServerName> {
    stored
        .into_iter()
        .filter_map(|s| ruma::OwnedServerName::try_from(s).ok())
        .collect()
}

/// The `appservice_txns` columns [`appservice_state`] reads, in order.
pub const APPSERVICE_STATE_COLUMNS: &str =
    "delivered_pos, next_txn_id, pending_txn_id, pending_up_to, pending_body";

/// An appservice's transaction state ([`APPSERVICE_STATE_COLUMNS`]).
pub fn appservice_state(row: &dyn Row) -> StorageResult<crate::AppserviceTxnState> {
    let pending = match (row.opt_int(2)?, row.opt_int(3)?, row.opt_text(4)?) {
        (Some(txn_id), Some(up_to), Some(body)) => Some(crate::PendingAppserviceTxn {
            txn_id: crate::convert::to_u64(txn_id, "pending_txn_id")?,
            up_to: StreamPos(up_to),
            body,
        }),
        _ => None,
    };
    Ok(crate::AppserviceTxnState {
        delivered_pos: StreamPos(row.int(0)?),
        next_txn_id: crate::convert::to_u64(row.int(1)?, "next_txn_id")?,
        pending,
    })
}

/// A `pushers` row ([`crate::PUSHER_COLUMNS`]).
pub fn pusher(row: &dyn Row) -> StorageResult<PusherRecord> {
    Ok(PusherRecord {
        id: row.int(0)?,
        user_id: parse_id(row.text(1)?, "pusher user")?,
        device_id: row.text(2)?,
        kind: row.text(3)?,
        app_id: row.text(4)?,
        pushkey: row.text(5)?,
        app_display_name: row.text(6)?,
        device_display_name: row.text(7)?,
        profile_tag: row.opt_text(8)?,
        lang: row.text(9)?,
        data: row.text(10)?,
        created_ms: to_u64(row.int(11)?, "pusher created_ms")?,
    })
}

/// The `push_queue` columns [`queued_push`] reads, in order.
pub const QUEUED_PUSH_COLUMNS: &str = "pusher_id, stream_pos, room_id, event_id, actions";

pub fn queued_push(row: &dyn Row) -> StorageResult<QueuedPush> {
    Ok(QueuedPush {
        pusher_id: row.int(0)?,
        stream_pos: StreamPos(row.int(1)?),
        room_id: parse_id(row.text(2)?, "queued push room")?,
        event_id: parse_id(row.text(3)?, "queued push event")?,
        actions: row.text(4)?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A row of text, integer and NULL columns.
    struct Fake(Vec<Option<Result<&'static str, i64>>>);

    impl Fake {
        fn column(&self, idx: usize) -> Option<Result<&'static str, i64>> {
            self.0.get(idx).copied().flatten()
        }
    }

    impl Row for Fake {
        fn text(&self, idx: usize) -> StorageResult<String> {
            self.opt_text(idx)?.ok_or_else(|| corrupt("fake", "NULL"))
        }
        fn opt_text(&self, idx: usize) -> StorageResult<Option<String>> {
            match self.column(idx) {
                None => Ok(None),
                Some(Ok(text)) => Ok(Some(text.to_owned())),
                Some(Err(_)) => Err(corrupt("fake", "not text")),
            }
        }
        fn int(&self, idx: usize) -> StorageResult<i64> {
            self.opt_int(idx)?.ok_or_else(|| corrupt("fake", "NULL"))
        }
        fn opt_int(&self, idx: usize) -> StorageResult<Option<i64>> {
            match self.column(idx) {
                None => Ok(None),
                Some(Err(n)) => Ok(Some(n)),
                Some(Ok(_)) => Err(corrupt("fake", "not an integer")),
            }
        }
        fn flag(&self, idx: usize) -> StorageResult<bool> {
            Ok(self.int(idx)? != 0)
        }
    }

    fn outbox_row(id: i64, event_id: Option<&'static str>, edu: Option<&'static str>) -> Fake {
        Fake(vec![
            Some(Err(id)),
            Some(Ok("remote.example")),
            event_id.map(Ok),
            edu.map(Ok),
            Some(Err(1_000)),
        ])
    }

    #[test]
    fn an_outbox_row_carries_exactly_one_of_a_pdu_and_an_edu() {
        let pdu = outbox_entry(&outbox_row(1, Some("$e"), None)).expect("a PDU row");
        assert!(matches!(pdu.content, OutboxContent::Pdu(_)));
        let edu = outbox_entry(&outbox_row(2, None, Some("{}"))).expect("an EDU row");
        assert_eq!(edu.content, OutboxContent::Edu("{}".to_owned()));
        assert!(outbox_entry(&outbox_row(3, Some("$e"), Some("{}"))).is_err());
        assert!(outbox_entry(&outbox_row(4, None, None)).is_err());
    }

    #[test]
    fn an_outbox_batch_stops_at_the_first_row_over_a_limit() {
        let rows = [
            outbox_row(1, Some("$a"), None),
            outbox_row(2, None, Some("{}")),
            outbox_row(3, Some("$b"), None),
            // Never decoded: the batch ends before it.
            outbox_row(4, None, None),
        ];
        let batch = outbox_batch(rows.iter().map(|row| outbox_entry(row)), 1, 5).expect("batch");
        let ids: Vec<i64> = batch.iter().map(|entry| entry.id).collect();
        assert_eq!(ids, [1, 2]);
    }

    #[test]
    fn only_canonical_filter_ids_name_a_filter() {
        assert_eq!(filter_id("0"), Some(0));
        assert_eq!(filter_id("12"), Some(12));
        for not_an_id in ["01", "+1", "-1", "", "x", "1.0"] {
            assert_eq!(filter_id(not_an_id), None, "{not_an_id:?}");
        }
    }

    #[test]
    fn empty_key_columns_stand_for_none() {
        assert_eq!(account_data_room(None), "");
        assert_eq!(receipt_thread(None), "");
        assert_eq!(receipt_thread(Some("main")), "main");
        assert_eq!(
            key_algorithm("signed_curve25519:AAAAHg"),
            "signed_curve25519"
        );
        assert_eq!(key_algorithm("no_colon"), "no_colon");
    }
}
