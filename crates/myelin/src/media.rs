//! `myelin media ...`: deleting a user's or a room's media, quarantine, and retention of the cache
//! of other servers' media. Each command opens the database and the media directory from the
//! configuration as `serve` does and may run while the server runs (it then answers 404 for
//! what was deleted or quarantined). Integration tests call [`run`], the same function the
//! command line calls.

use anyhow::{bail, Context};
use clap::Subcommand;
use myelin_service::media::Removed;
use ruma::{OwnedRoomId, OwnedUserId};

use crate::{Config, Myelin};

#[derive(Debug, Clone, Subcommand)]
pub enum MediaCommand {
    /// Delete every media a user of this server uploaded, with its thumbnails and files.
    DeleteUser {
        /// The full user ID (`@alice:example.org`).
        user_id: String,
    },
    /// Delete the media of this server that a room's events name (`url`, `info.thumbnail_url`,
    /// `file.url`), with their thumbnails and files.
    DeleteRoom {
        /// The room ID (`!abc:example.org`).
        room_id: String,
    },
    /// Quarantine a media (of this server or another): it answers 404 to clients and servers.
    Quarantine {
        /// The media's `mxc://server/id` URI.
        uri: String,
    },
    /// Quarantine every media a room's events name.
    QuarantineRoom {
        /// The room ID (`!abc:example.org`).
        room_id: String,
    },
    /// Release a quarantined media.
    Unquarantine {
        /// The media's `mxc://server/id` URI.
        uri: String,
    },
    /// Remove cached copies of other servers' media, least recently used first (they are
    /// fetched again when next asked for).
    PurgeRemote {
        /// Remove every copy not served for this long: a number with a unit, `s`, `m`, `h` or
        /// `d` (`30d`).
        #[arg(long, value_name = "DURATION")]
        older_than: Option<String>,
        /// Then remove more until the cache holds at most this many bytes.
        #[arg(long, value_name = "N")]
        max_bytes: Option<u64>,
    },
}

/// Runs `command` against the data `config` points at; what it did, to print.
pub async fn run(config: Config, command: MediaCommand) -> anyhow::Result<String> {
    let server = Myelin::open(config.clone()).await?;
    let media = &server.services().media;
    let summary = match command {
        MediaCommand::DeleteUser { user_id } => {
            let user_id = OwnedUserId::try_from(user_id.as_str())
                .with_context(|| format!("{user_id:?} is not a user ID"))?;
            if user_id.server_name() != config.server_name.as_str() {
                bail!("{user_id} is not a user of this server");
            }
            let removed = media.delete_user_media(&user_id).await?;
            format!("Deleted the media of {user_id}: {}", describe(removed))
        }
        MediaCommand::DeleteRoom { room_id } => {
            let room_id = parse_room(&room_id)?;
            let removed = media.delete_room_media(&room_id).await?;
            format!("Deleted the media of {room_id}: {}", describe(removed))
        }
        MediaCommand::Quarantine { uri } => {
            let changed = media.set_quarantined(&uri, true).await?;
            let already = if changed { "" } else { " (already was)" };
            format!("Quarantined {uri}{already}")
        }
        MediaCommand::QuarantineRoom { room_id } => {
            let room_id = parse_room(&room_id)?;
            let count = media.quarantine_room(&room_id).await?;
            format!("Quarantined {count} media named in {room_id}")
        }
        MediaCommand::Unquarantine { uri } => {
            let changed = media.set_quarantined(&uri, false).await?;
            let already = if changed {
                ""
            } else {
                " (was not quarantined)"
            };
            format!("Released {uri}{already}")
        }
        MediaCommand::PurgeRemote {
            older_than,
            max_bytes,
        } => {
            if older_than.is_none() && max_bytes.is_none() {
                bail!("say what to purge: --older-than DURATION and/or --max-bytes N");
            }
            let cutoff = match older_than {
                Some(text) => {
                    let age = parse_duration_ms(&text)?;
                    Some(now_ms().saturating_sub(age))
                }
                None => None,
            };
            let removed = media.purge_remote(cutoff, max_bytes).await?;
            format!("Purged cached remote media: {}", describe(removed))
        }
    };
    Ok(summary)
}

fn parse_room(room_id: &str) -> anyhow::Result<OwnedRoomId> {
    OwnedRoomId::try_from(room_id).with_context(|| format!("{room_id:?} is not a room ID"))
}

fn describe(removed: Removed) -> String {
    format!(
        "{} media, {} files ({} bytes) removed",
        removed.media, removed.files, removed.bytes
    )
}

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// `90s`, `15m`, `12h`, `30d` (or a bare number of seconds) in milliseconds.
pub fn parse_duration_ms(text: &str) -> anyhow::Result<u64> {
    let text = text.trim();
    let split = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let number: u64 = number
        .parse()
        .with_context(|| format!("{text:?} is not a duration (like 30d, 12h, 15m, 90s)"))?;
    let unit_ms: u64 = match unit {
        "" | "s" => 1_000,
        "m" => 60_000,
        "h" => 3_600_000,
        "d" => 86_400_000,
        _ => bail!("{text:?}: the unit must be s, m, h or d"),
    };
    number
        .checked_mul(unit_ms)
        .with_context(|| format!("{text:?} is too long"))
}

#[cfg(test)]
mod tests {
    use super::parse_duration_ms;

    #[test]
    fn durations_parse() {
        assert_eq!(parse_duration_ms("30d").ok(), Some(30 * 86_400_000));
        assert_eq!(parse_duration_ms("15m").ok(), Some(900_000));
        assert_eq!(parse_duration_ms("90").ok(), Some(90_000));
        assert!(parse_duration_ms("3w").is_err());
        assert!(parse_duration_ms("h").is_err());
    }
}
