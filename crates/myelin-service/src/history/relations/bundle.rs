//! Bundled aggregations (spec: Client-Server API, "Aggregations of child events"): the
//! `unsigned["m.relations"]` of each timeline event served by `/messages`, `/context`, `/event`,
//! `/relations`, `/threads` and `/sync`:
//!
//! - `m.thread`: for an event without a relation of its own that has thread replies, the newest
//!   reply the reader may see (formatted as a client event, with its own aggregations), the
//!   number of replies and whether the reader started the thread or replied in it;
//! - `m.replace`: the newest valid edit the reader may see (same sender and type as the original,
//!   neither a state event, with `m.new_content` unless encrypted), not for a redacted event;
//! - `m.reference`: the IDs of the events referencing it.
//!
//! State events, edits and annotations get none. A page costs a fixed number of storage calls
//! (which of its events anything relates to; if any, thread summaries, their newest replies,
//! edits, references), whatever its size. A reader
//! whose view of the room ends at a position (a former member) gets aggregations of what was
//! there up to it.

use std::collections::{HashMap, HashSet};

use myelin_core::StreamPos;
use myelin_storage::{EventRecord, ThreadSummary, REPLACE};
use ruma::{DeviceId, OwnedEventId, RoomId, UserId};
use serde_json::{json, Map, Value};

use crate::format::client_event;
use crate::rooms::visibility::HistoryView;
use crate::{History, ServiceResult};

/// How many of an event's newest edits are looked at for a valid one the reader may see.
const EDIT_CANDIDATES: usize = 3;
/// The most references listed in one event's `m.reference` chunk (`/relations` lists them all).
const REFERENCES_PER_EVENT: usize = 100;
const ANNOTATION: &str = "m.annotation";

/// A thread's summary with its newest reply.
struct ThreadAggregation {
    summary: ThreadSummary,
    latest: EventRecord,
}

/// Everything one page's aggregations are made of, keyed by the aggregated event.
#[derive(Default)]
struct Aggregations {
    threads: HashMap<OwnedEventId, ThreadAggregation>,
    edits: HashMap<OwnedEventId, EventRecord>,
    references: HashMap<OwnedEventId, Vec<OwnedEventId>>,
}

impl History {
    /// Formats timeline events for `viewer` (as [`History::format_events`]) with their bundled
    /// aggregations. `view` is the reader's view of the events' room and `up_to` the last
    /// position they may read (a former member's leave), if their view ends somewhere.
    pub(crate) async fn format_timeline(
        &self,
        records: &[EventRecord],
        viewer: (&UserId, &DeviceId),
        view: &mut HistoryView<'_>,
        up_to: Option<StreamPos>,
    ) -> ServiceResult<Vec<Value>> {
        self.format_page(records, viewer, (view, up_to), None).await
    }

    /// As [`History::format_timeline`], with `related` the events of `records` that anything
    /// relates to (possibly more: any event read), already looked up for many pages at once (a sliding sync
    /// window's timeline read).
    pub(crate) async fn format_timeline_known(
        &self,
        records: &[EventRecord],
        viewer: (&UserId, &DeviceId),
        (view, up_to): (&mut HistoryView<'_>, Option<StreamPos>),
        related: &HashSet<OwnedEventId>,
    ) -> ServiceResult<Vec<Value>> {
        self.format_page(records, viewer, (view, up_to), Some(related))
            .await
    }

    async fn format_page(
        &self,
        records: &[EventRecord],
        viewer: (&UserId, &DeviceId),
        (view, up_to): (&mut HistoryView<'_>, Option<StreamPos>),
        related: Option<&HashSet<OwnedEventId>>,
    ) -> ServiceResult<Vec<Value>> {
        let mut formatted = self.format_events(records, Some(viewer)).await?;
        let aggregations = self
            .aggregations(records, (viewer.0, related), view, up_to)
            .await?;
        if aggregations.is_empty() {
            return Ok(formatted);
        }
        let now = self.ctx.now_ms();
        for (event, record) in formatted.iter_mut().zip(records) {
            let id = &record.pdu.event_id;
            let mut relations = aggregations.of(id, viewer, now);
            if let Some(thread) = aggregations.threads.get(id) {
                relations.insert(
                    "m.thread".into(),
                    thread_json(thread, record, &aggregations, viewer, now),
                );
            }
            if !relations.is_empty() {
                event["unsigned"]["m.relations"] = Value::Object(relations);
            }
        }
        Ok(formatted)
    }

    /// What the events of `records` that may have aggregations have.
    /// `related`, when known, holds those of `records` anything relates to (else looked up).
    async fn aggregations(
        &self,
        records: &[EventRecord],
        (user_id, related): (&UserId, Option<&HashSet<OwnedEventId>>),
        view: &mut HistoryView<'_>,
        up_to: Option<StreamPos>,
    ) -> ServiceResult<Aggregations> {
        let room_id = view.room_id().to_owned();
        let mut seen = HashSet::new();
        let parents: Vec<&EventRecord> = records
            .iter()
            .filter(|r| r.pdu.room_id == room_id && may_have_aggregations(r))
            .filter(|r| seen.insert(r.pdu.event_id.clone()))
            .collect();
        if parents.is_empty() {
            return Ok(Aggregations::default());
        }
        // Most events have nothing relating to them (a sync's latest message): one lookup in
        // the index then spares the three below, which only ever find relations of these.
        let looked_up: HashSet<OwnedEventId>;
        let related = match related {
            Some(known) => known,
            None => {
                let ids: Vec<OwnedEventId> =
                    parents.iter().map(|r| r.pdu.event_id.clone()).collect();
                looked_up = self
                    .ctx
                    .storage
                    .parents_related_by(&room_id, &ids, None, None)
                    .await?
                    .into_iter()
                    .collect();
                &looked_up
            }
        };
        let parents: Vec<&EventRecord> = parents
            .into_iter()
            .filter(|r| related.contains(&r.pdu.event_id))
            .collect();
        if parents.is_empty() {
            return Ok(Aggregations::default());
        }
        // Only an event without a relation of its own can start a thread.
        let roots: Vec<_> = parents
            .iter()
            .filter(|r| r.pdu.relation().is_none())
            .map(|r| r.pdu.event_id.clone())
            .collect();
        let threads = self
            .thread_aggregations(&room_id, &roots, user_id, view, up_to)
            .await?;
        // The newest replies are formatted here too, with their own edits and references.
        let mut targets: Vec<&EventRecord> = parents;
        targets.extend(threads.values().map(|t| &t.latest));
        let unredacted: Vec<_> = targets
            .iter()
            .filter(|r| r.redacted_by.is_none())
            .map(|r| r.pdu.event_id.clone())
            .collect();
        let edits = self
            .latest_edits(&room_id, &unredacted, view, up_to)
            .await?;
        let ids: Vec<_> = targets.iter().map(|r| r.pdu.event_id.clone()).collect();
        let mut references: HashMap<OwnedEventId, Vec<OwnedEventId>> = HashMap::new();
        for (parent, child) in self
            .ctx
            .storage
            .references(&room_id, &ids, up_to, REFERENCES_PER_EVENT)
            .await?
        {
            references.entry(parent).or_default().push(child);
        }
        Ok(Aggregations {
            threads,
            edits,
            references,
        })
    }

    /// The threads rooted at `roots`, each with its newest reply if the reader may see it (a
    /// thread whose newest reply they may not see is left out, rather than show another).
    async fn thread_aggregations(
        &self,
        room_id: &RoomId,
        roots: &[OwnedEventId],
        user_id: &UserId,
        view: &mut HistoryView<'_>,
        up_to: Option<StreamPos>,
    ) -> ServiceResult<HashMap<OwnedEventId, ThreadAggregation>> {
        let summaries = self
            .ctx
            .storage
            .thread_summaries(room_id, roots, user_id, up_to)
            .await?;
        if summaries.is_empty() {
            return Ok(HashMap::new());
        }
        let latest_ids: Vec<_> = summaries.iter().map(|s| s.latest.clone()).collect();
        let mut latest: HashMap<_, _> = self
            .ctx
            .storage
            .get_events(&latest_ids)
            .await?
            .into_iter()
            .map(|r| (r.pdu.event_id.clone(), r))
            .collect();
        let mut out = HashMap::new();
        for summary in summaries {
            let Some(reply) = latest.remove(&summary.latest) else {
                continue;
            };
            if let Some(reply) = view.visible(reply).await? {
                out.insert(
                    summary.root.clone(),
                    ThreadAggregation {
                        summary,
                        latest: reply,
                    },
                );
            }
        }
        Ok(out)
    }

    /// The newest valid edit of each of `parents` that the reader may see.
    async fn latest_edits(
        &self,
        room_id: &RoomId,
        parents: &[OwnedEventId],
        view: &mut HistoryView<'_>,
        up_to: Option<StreamPos>,
    ) -> ServiceResult<HashMap<OwnedEventId, EventRecord>> {
        let candidates = self
            .ctx
            .storage
            .edits(room_id, parents, up_to, EDIT_CANDIDATES)
            .await?;
        let mut out = HashMap::new();
        // Newest first per parent: the first valid one wins.
        for (parent, edit) in candidates {
            if out.contains_key(&parent) || !carries_new_content(&edit) {
                continue;
            }
            // An edit served redacted (its sender erased) carries nothing to show.
            if let Some(edit) = view.visible(edit).await? {
                if carries_new_content(&edit) {
                    out.insert(parent, edit);
                }
            }
        }
        Ok(out)
    }
}

impl Aggregations {
    fn is_empty(&self) -> bool {
        self.threads.is_empty() && self.edits.is_empty() && self.references.is_empty()
    }

    /// The `m.replace` and `m.reference` aggregations of one event.
    fn of(&self, id: &OwnedEventId, viewer: (&UserId, &DeviceId), now: u64) -> Map<String, Value> {
        let mut relations = Map::new();
        if let Some(edit) = self.edits.get(id) {
            relations.insert(REPLACE.into(), client_event(edit, Some(viewer), now, None));
        }
        if let Some(refs) = self.references.get(id) {
            let chunk: Vec<Value> = refs.iter().map(|r| json!({ "event_id": r })).collect();
            relations.insert("m.reference".into(), json!({ "chunk": chunk }));
        }
        relations
    }
}

/// The `m.thread` aggregation of `root`.
fn thread_json(
    thread: &ThreadAggregation,
    root: &EventRecord,
    aggregations: &Aggregations,
    viewer: (&UserId, &DeviceId),
    now: u64,
) -> Value {
    let mut latest = client_event(&thread.latest, Some(viewer), now, None);
    let own = aggregations.of(&thread.latest.pdu.event_id, viewer, now);
    if !own.is_empty() {
        latest["unsigned"]["m.relations"] = Value::Object(own);
    }
    json!({
        "latest_event": latest,
        "count": thread.summary.count,
        "current_user_participated": thread.summary.participated || root.pdu.sender == viewer.0,
    })
}

/// State events, edits and annotations have no aggregations.
fn may_have_aggregations(record: &EventRecord) -> bool {
    !record.pdu.is_state()
        && record
            .pdu
            .relation()
            .is_none_or(|r| r.rel_type != REPLACE && r.rel_type != ANNOTATION)
}

/// An edit must carry the new content (`m.new_content`), which the server can only check when
/// the edit is not encrypted.
fn carries_new_content(edit: &EventRecord) -> bool {
    edit.pdu.kind.to_string() == "m.room.encrypted"
        || edit
            .pdu
            .content_value()
            .get("m.new_content")
            .is_some_and(Value::is_object)
}
