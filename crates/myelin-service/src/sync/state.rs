//! The `state` section of a joined room: the state before the timeline (initial sync, full
//! state, newly joined) or what changed since the token, through the state filter and the
//! lazy loading of members.

use std::collections::{HashMap, HashSet};

use myelin_core::{Pdu, StreamPos};
use myelin_storage::EventRecord;
use ruma::{events::StateEventType, OwnedEventId, UserId};

use super::{pass::Pass, Syncer};
use crate::{filter::RoomEventFilter, rooms::RoomState, ServiceResult};

impl Syncer {
    /// The state events to send with `timeline` (none that the timeline itself carries).
    pub(super) async fn state_events(
        &self,
        pass: &Pass<'_>,
        state: &RoomState,
        timeline: &[EventRecord],
        newly: bool,
    ) -> ServiceResult<Vec<EventRecord>> {
        let user_id = &pass.authed.user_id;
        let state_filter = &pass.filter.room.state;
        let timeline_ids: HashSet<_> = timeline.iter().map(|r| r.pdu.event_id.clone()).collect();
        let mut ids = if newly {
            self.state_before(timeline, state).await?
        } else {
            changed_since(state, pass.since_pos())
        };
        ids.retain(|id| !timeline_ids.contains(id));
        retain_wanted(&mut ids, state, state_filter, timeline, user_id);
        let mut records = self.ctx.storage.get_events(&ids).await?;
        records.retain(|r| state_filter.allows(&r.pdu.kind.to_string(), r.pdu.sender.as_str()));
        if state_filter.lazy_load_members {
            self.lazy_load_members(&mut records, state, timeline, &timeline_ids, user_id)
                .await?;
        }
        Ok(records)
    }

    /// Event IDs of the state before the first timeline event (current state if the timeline
    /// changes no state).
    async fn state_before(
        &self,
        timeline: &[EventRecord],
        state: &RoomState,
    ) -> ServiceResult<Vec<OwnedEventId>> {
        let changes_state = timeline.iter().any(|r| r.pdu.state_key.is_some());
        let first_prev = timeline
            .first()
            .and_then(|r| r.pdu.prev_events.first().cloned());
        match (changes_state, first_prev) {
            // An outlier prev event (history from before our join) has no stored state.
            (true, Some(prev)) => match self
                .ctx
                .storage
                .get_event(&prev)
                .await?
                .filter(|r| r.outlier.is_none())
            {
                Some(prev) => Ok(self
                    .ctx
                    .storage
                    .state_at_snapshot(prev.state_snapshot)
                    .await?
                    .into_values()
                    .collect()),
                None => Ok(state.entries().map(|e| e.pdu.event_id.clone()).collect()),
            },
            (true, None) => Ok(Vec::new()),
            (false, _) => Ok(state.entries().map(|e| e.pdu.event_id.clone()).collect()),
        }
    }

    /// Lazy loading: keeps only the member events of the timeline's senders and the user, and
    /// adds those of senders whose member event was not among the state sent.
    async fn lazy_load_members(
        &self,
        records: &mut Vec<EventRecord>,
        state: &RoomState,
        timeline: &[EventRecord],
        timeline_ids: &HashSet<OwnedEventId>,
        user_id: &UserId,
    ) -> ServiceResult<()> {
        let mut wanted: HashSet<String> =
            timeline.iter().map(|r| r.pdu.sender.to_string()).collect();
        wanted.insert(user_id.to_string());
        records.retain(|r| {
            r.pdu.kind.to_string() != "m.room.member"
                || r.pdu.state_key.as_ref().is_some_and(|k| wanted.contains(k))
        });
        let have: HashSet<String> = records
            .iter()
            .filter_map(|r| r.pdu.state_key.clone())
            .collect();
        let missing: Vec<_> = timeline
            .iter()
            .map(|r| r.pdu.sender.to_string())
            .filter(|s| !have.contains(s))
            .filter_map(|s| {
                state
                    .get(&StateEventType::RoomMember, &s)
                    .map(|e| e.pdu.event_id.clone())
            })
            .filter(|id| !timeline_ids.contains(id))
            .collect::<HashSet<_>>()
            .into_iter()
            .collect();
        records.extend(self.ctx.storage.get_events(&missing).await?);
        Ok(())
    }
}

/// Event IDs of the current state entries that changed after `since`.
fn changed_since(state: &RoomState, since: Option<StreamPos>) -> Vec<OwnedEventId> {
    state
        .entries()
        .filter(|e| since.is_some_and(|s| e.pos > s))
        .map(|e| e.pdu.event_id.clone())
        .collect()
}

/// Drops the IDs the state filter (or lazy loading) rejects, as far as the in-memory current
/// state describes them.
fn retain_wanted(
    ids: &mut Vec<OwnedEventId>,
    state: &RoomState,
    state_filter: &RoomEventFilter,
    timeline: &[EventRecord],
    user_id: &UserId,
) {
    // Filter what the in-memory current state already describes before loading anything:
    // a lazy-loading sync of a big room then loads a handful of member events, not all.
    let known: HashMap<&ruma::EventId, &Pdu> = state
        .entries()
        .map(|e| (&*e.pdu.event_id, &*e.pdu))
        .collect();
    let lazy_wanted: Option<HashSet<&str>> = state_filter.lazy_load_members.then(|| {
        timeline
            .iter()
            .map(|r| r.pdu.sender.as_str())
            .chain([user_id.as_str()])
            .collect()
    });
    ids.retain(|id| match known.get(&**id) {
        None => true,
        Some(pdu) => {
            let kind = pdu.kind.to_string();
            let lazily_dropped = kind == "m.room.member"
                && lazy_wanted
                    .as_ref()
                    .is_some_and(|w| !pdu.state_key.as_deref().is_some_and(|k| w.contains(k)));
            !lazily_dropped && state_filter.allows(&kind, pdu.sender.as_str())
        }
    });
}
