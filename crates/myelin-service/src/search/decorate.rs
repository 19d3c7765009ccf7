//! Dresses a page of hits as `/search` answers: each result with its rank and, when asked, its
//! context (read through `/context`'s path, so through the visibility check) and the senders'
//! profiles; the current state of the rooms found; groupings by room and by sender.

use std::collections::{BTreeMap, BTreeSet};

use myelin_storage::{EventRecord, SearchHit};
use ruma::events::StateEventType;
use ruma::RoomId;
use serde_json::{json, Map, Value};

use super::{request::Checked, Search};
use crate::{accounts::Authed, sync::pagination_token, ServiceResult};

impl Search {
    pub(super) async fn decorate(
        &self,
        authed: &Authed,
        criteria: &Checked,
        hits: &[(SearchHit, EventRecord)],
    ) -> ServiceResult<Value> {
        let records: Vec<EventRecord> = hits.iter().map(|(_, r)| r.clone()).collect();
        let viewer = Some((&*authed.user_id, &*authed.device_id));
        let events = self.history.format_events(&records, viewer).await?;
        let mut results = Vec::with_capacity(hits.len());
        for ((hit, record), event) in hits.iter().zip(events) {
            let mut result = json!({ "rank": hit.rank, "result": event });
            if let Some((before, after, profiles)) = criteria.context {
                result["context"] = self
                    .context_of(authed, record, before, after, profiles)
                    .await?;
            }
            results.push(result);
        }
        let mut body = json!({ "results": results });
        let rooms: BTreeSet<_> = records.iter().map(|r| r.pdu.room_id.clone()).collect();
        if criteria.include_state {
            let mut state = Map::new();
            for room in &rooms {
                let events = self
                    .history
                    .room_state_events(&authed.user_id, room)
                    .await?;
                state.insert(room.to_string(), json!(events));
            }
            body["state"] = Value::Object(state);
        }
        let mut groups = Map::new();
        if criteria.group_by_room {
            groups.insert(
                "room_id".into(),
                group(&records, |r| r.pdu.room_id.to_string()),
            );
        }
        if criteria.group_by_sender {
            groups.insert(
                "sender".into(),
                group(&records, |r| r.pdu.sender.to_string()),
            );
        }
        if !groups.is_empty() {
            body["groups"] = Value::Object(groups);
        }
        Ok(body)
    }

    /// The events around one result (`before` older, newest first; `after` newer), with the
    /// senders' profiles in the room when asked.
    async fn context_of(
        &self,
        authed: &Authed,
        record: &EventRecord,
        before: usize,
        after: usize,
        include_profile: bool,
    ) -> ServiceResult<Value> {
        let room = &record.pdu.room_id;
        // `/context` splits its limit evenly; ask for enough on both sides, then cut.
        let page = self
            .history
            .context(
                &authed.user_id,
                &authed.device_id,
                room,
                &record.pdu.event_id,
                2 * before.max(after),
            )
            .await?;
        let events_before: Vec<Value> = page.before.into_iter().take(before).collect();
        let events_after: Vec<Value> = page.after.into_iter().take(after).collect();
        let mut context = json!({
            "events_before": events_before,
            "events_after": events_after,
            "start": pagination_token(page.start),
            "end": pagination_token(page.end),
        });
        if include_profile {
            let senders: BTreeSet<String> = events_before
                .iter()
                .chain(&events_after)
                .filter_map(|e| e["sender"].as_str().map(str::to_owned))
                .chain([record.pdu.sender.to_string()])
                .collect();
            context["profile_info"] = self.profiles_in(room, &senders).await?;
        }
        Ok(context)
    }

    /// Each sender's display name and avatar as the room's member state has them.
    async fn profiles_in(&self, room: &RoomId, senders: &BTreeSet<String>) -> ServiceResult<Value> {
        let state = self.rooms.room_state(room).await?;
        let mut profiles = Map::new();
        for sender in senders {
            let member = state
                .content(&StateEventType::RoomMember, sender)
                .unwrap_or_default();
            profiles.insert(
                sender.clone(),
                json!({ "displayname": member.get("displayname"), "avatar_url": member.get("avatar_url") }),
            );
        }
        Ok(Value::Object(profiles))
    }
}

/// `{key: {"results": [event IDs], "order": n}}`, groups in order of their first result.
fn group(records: &[EventRecord], key: impl Fn(&EventRecord) -> String) -> Value {
    let mut groups: BTreeMap<String, (usize, Vec<String>)> = BTreeMap::new();
    for record in records {
        let next_order = groups.len();
        groups
            .entry(key(record))
            .or_insert_with(|| (next_order, Vec::new()))
            .1
            .push(record.pdu.event_id.to_string());
    }
    Value::Object(
        groups
            .into_iter()
            .map(|(k, (order, results))| (k, json!({ "results": results, "order": order })))
            .collect(),
    )
}
