//! E-mail pushers (kind `email`, pushkey = one of the user's validated addresses): as Synapse
//! does, nothing is mailed at once. A notification waits in the pusher's durable queue for
//! `[smtp] notification_delay_ms`; then, if the user has still not read its room, one digest
//! of everything still unread in the queue goes out, and the queue is emptied up to there. A
//! crash between the mail and the deletion sends that digest again (SMTP has no idempotency);
//! nothing queued is lost.

use std::collections::BTreeMap;
use std::time::Duration;

use myelin_storage::{EventRecord, PusherRecord, QueuedPush};
use ruma::OwnedRoomId;
use serde_json::Value;

use super::gateway::Drained;
use super::Push;
use crate::ServiceResult;

/// Queued notifications one digest covers at most.
const DIGEST_BATCH: usize = 100;
/// Characters of a message body quoted in the digest.
const QUOTE_CHARS: usize = 200;

/// One room's part of a digest.
struct RoomDigest {
    name: String,
    lines: Vec<String>,
}

impl Push {
    /// Mails the pusher's due digest, if any; says when the next one is due.
    pub(super) async fn drain_email(&self, pusher: &PusherRecord) -> Result<Drained, String> {
        let Some(mailer) = &self.ctx.mailer else {
            // SMTP was configured when the pusher was set and is not now: keep the queue.
            return Ok(Drained::Empty);
        };
        let storage = &self.ctx.storage;
        let queued = storage
            .queued_pushes(pusher.id, DIGEST_BATCH)
            .await
            .map_err(|e| e.to_string())?;
        let Some(oldest) = queued.first() else {
            return Ok(Drained::Empty);
        };
        let now = self.ctx.now_ms();
        let delay = self.ctx.config.smtp.notification_delay_ms;
        let queued_at = match storage.get_event(&oldest.event_id).await {
            Ok(Some(record)) => u64::from(record.pdu.origin_server_ts.0).min(now),
            Ok(None) => now.saturating_sub(delay),
            Err(e) => return Err(e.to_string()),
        };
        let due = queued_at.saturating_add(delay);
        if now < due {
            return Ok(Drained::Later(Duration::from_millis(due - now)));
        }
        let digest = self
            .digest(pusher, &queued)
            .await
            .map_err(|e| e.to_string())?;
        if let Some((subject, body)) = digest {
            mailer
                .send(&pusher.pushkey, &subject, body)
                .await
                .map_err(|e| e.to_string())?;
        }
        for item in &queued {
            storage
                .delete_queued_push(pusher.id, item.stream_pos)
                .await
                .map_err(|e| e.to_string())?;
        }
        // More may be queued behind this batch: look again at once.
        Ok(Drained::Later(Duration::ZERO))
    }

    /// The digest's subject and text, of the queued notifications in rooms the user has still
    /// not read; `None` when everything was read meanwhile.
    async fn digest(
        &self,
        pusher: &PusherRecord,
        queued: &[QueuedPush],
    ) -> ServiceResult<Option<(String, String)>> {
        let storage = &self.ctx.storage;
        let ids: Vec<_> = queued.iter().map(|q| q.event_id.clone()).collect();
        let events = storage.get_events(&ids).await?;
        let mut rooms: BTreeMap<OwnedRoomId, RoomDigest> = BTreeMap::new();
        let mut unread_rooms: BTreeMap<OwnedRoomId, u64> = BTreeMap::new();
        for record in &events {
            let room_id = record.pdu.room_id.clone();
            if !unread_rooms.contains_key(&room_id) {
                let counts = storage
                    .notification_counts(&pusher.user_id, &room_id)
                    .await?
                    .total();
                unread_rooms.insert(room_id.clone(), counts.notifications);
            }
            if unread_rooms.get(&room_id).copied().unwrap_or(0) == 0 {
                continue;
            }
            let names = self.event_names(record).await?;
            let room = rooms.entry(room_id.clone()).or_insert_with(|| RoomDigest {
                name: quote(
                    &names
                        .room_name
                        .clone()
                        .or(names.room_alias.clone())
                        .unwrap_or_else(|| room_id.to_string()),
                ),
                lines: Vec::new(),
            });
            let sender = names
                .sender_display_name
                .unwrap_or_else(|| record.pdu.sender.to_string());
            room.lines
                .push(format!("{}: {}", quote(&sender), summary(record)));
        }
        let count: usize = rooms.values().map(|r| r.lines.len()).sum();
        if count == 0 {
            return Ok(None);
        }
        let brand = brand(pusher, self.ctx.config.server_name.as_str());
        let subject = match rooms.values().next() {
            Some(room) if rooms.len() == 1 => {
                format!(
                    "[{brand}] {} in {}",
                    plural(count, "unread message"),
                    room.name
                )
            }
            _ => format!(
                "[{brand}] {} in {} rooms",
                plural(count, "unread message"),
                rooms.len()
            ),
        };
        let mut body = format!("You have {} on {brand}.\n", plural(count, "unread message"));
        for room in rooms.values() {
            body.push_str(&format!("\n{}\n", room.name));
            for line in &room.lines {
                body.push_str(&format!("  {line}\n"));
            }
        }
        body.push_str(
            "\nOpen your Matrix client to read and answer them. To stop these mails, turn off \
             e-mail notifications in your client's settings.\n",
        );
        Ok(Some((subject, body)))
    }
}

/// What the digest quotes of an event: the body of a message, else what kind of event it is.
fn summary(record: &EventRecord) -> String {
    let content = record.pdu.content_value();
    match record.pdu.kind.to_string().as_str() {
        "m.room.encrypted" => "(an encrypted message)".to_owned(),
        "m.room.member" => match content.get("membership").and_then(Value::as_str) {
            Some("invite") => "(invited you)".to_owned(),
            _ => "(a membership change)".to_owned(),
        },
        _ => match content.get("body").and_then(Value::as_str) {
            Some(body) => quote(body),
            None => format!("({})", record.pdu.kind),
        },
    }
}

/// The first [`QUOTE_CHARS`] characters of a body, on one line.
fn quote(body: &str) -> String {
    let line: String = body
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .take(QUOTE_CHARS)
        .collect();
    if body.chars().count() > QUOTE_CHARS {
        format!("{line}…")
    } else {
        line
    }
}

/// The name the pusher's `data.brand` gives the service, else the server's name.
fn brand(pusher: &PusherRecord, server_name: &str) -> String {
    serde_json::from_str::<Value>(&pusher.data)
        .ok()
        .and_then(|d| d.get("brand").and_then(Value::as_str).map(quote))
        .unwrap_or_else(|| server_name.to_owned())
}

fn plural(n: usize, what: &str) -> String {
    if n == 1 {
        format!("1 {what}")
    } else {
        format!("{n} {what}s")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quotes_are_one_bounded_line() {
        assert_eq!(quote("hi\nthere"), "hi there");
        let long = "x".repeat(QUOTE_CHARS + 5);
        assert_eq!(quote(&long).chars().count(), QUOTE_CHARS + 1);
        assert_eq!(plural(1, "unread message"), "1 unread message");
        assert_eq!(plural(3, "unread message"), "3 unread messages");
    }
}
