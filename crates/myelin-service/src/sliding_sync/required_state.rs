//! `required_state`: which state entries of a room the client asked for. `*` is a wildcard for
//! the type or the state key, `$ME` the syncing user's ID, and `$LAZY` (for `m.room.member`)
//! the members the timeline sent needs: its senders and the targets of its member events.

use std::collections::HashSet;

use myelin_storage::EventRecord;
use ruma::events::{StateEventType, TimelineEventType};

use crate::rooms::{RoomState, StateEntry};

const WILDCARD: &str = "*";
const ME: &str = "$ME";
const LAZY: &str = "$LAZY";
const MEMBER: &str = "m.room.member";

#[derive(Debug, Clone, PartialEq, Eq)]
enum Key {
    Any,
    Me,
    Lazy,
    Is(String),
}

/// A parsed `required_state` list.
#[derive(Debug, Clone)]
pub(super) struct RequiredState {
    /// `(type, key)`; `None` for a type wildcard.
    entries: Vec<(Option<String>, Key)>,
}

impl RequiredState {
    pub(super) fn new<'a>(spec: impl IntoIterator<Item = &'a (String, String)>) -> RequiredState {
        let entries = spec
            .into_iter()
            .map(|(kind, key)| {
                let kind = (kind != WILDCARD).then(|| kind.clone());
                let key = match key.as_str() {
                    WILDCARD => Key::Any,
                    ME => Key::Me,
                    // `$LAZY` means something only for members; elsewhere it is a state key.
                    LAZY if kind.as_deref().is_none_or(|k| k == MEMBER) => Key::Lazy,
                    other => Key::Is(other.to_owned()),
                };
                (kind, key)
            })
            .collect();
        RequiredState { entries }
    }

    /// Whether members are lazily loaded (`["m.room.member", "$LAZY"]`).
    pub(super) fn lazy_members(&self) -> bool {
        self.entries
            .iter()
            .any(|(kind, key)| *key == Key::Lazy && kind.as_deref().is_none_or(|k| k == MEMBER))
    }

    /// Whether the state entry `(kind, key)` was asked for; `lazy` are the members `$LAZY`
    /// stands for.
    pub(super) fn wants(&self, kind: &str, key: &str, me: &str, lazy: &HashSet<&str>) -> bool {
        self.entries.iter().any(|(want_kind, want_key)| {
            if want_kind.as_deref().is_some_and(|k| k != kind) {
                return false;
            }
            match want_key {
                Key::Any => true,
                Key::Me => key == me,
                Key::Lazy => kind == MEMBER && lazy.contains(key),
                Key::Is(k) => k == key,
            }
        })
    }
}

impl RequiredState {
    /// The entries of a room's current state [`RequiredState::wants`], each once: looked up by
    /// key, and only the types with a `*` key scanned for (all of the state for a `*` type).
    pub(super) fn pick<'a>(
        &self,
        state: &'a RoomState,
        me: &str,
        lazy: &HashSet<&str>,
    ) -> Vec<&'a StateEntry> {
        if self.entries.iter().any(|(kind, _)| kind.is_none()) {
            return state
                .entries()
                .filter(|e| {
                    let key = e.pdu.state_key.as_deref().unwrap_or_default();
                    self.wants(&e.pdu.kind.to_string(), key, me, lazy)
                })
                .collect();
        }
        let mut picked = Picked::default();
        for (kind, key) in &self.entries {
            let Some(kind) = kind.as_deref() else {
                continue;
            };
            let state_type = StateEventType::from(kind);
            match key {
                Key::Is(k) => picked.add(state.get(&state_type, k)),
                Key::Me => picked.add(state.get(&state_type, me)),
                // Only built for members (a type-less `$LAZY` takes the scan above).
                Key::Lazy => {
                    for user in lazy {
                        picked.add(state.get(&state_type, user));
                    }
                }
                Key::Any => {
                    let event_type = TimelineEventType::from(kind);
                    for e in state.entries().filter(|e| e.pdu.kind == event_type) {
                        picked.add(Some(e));
                    }
                }
            }
        }
        picked.entries
    }
}

/// Entries picked, each once.
#[derive(Default)]
struct Picked<'a> {
    entries: Vec<&'a StateEntry>,
    seen: HashSet<*const StateEntry>,
}

impl<'a> Picked<'a> {
    fn add(&mut self, entry: Option<&'a StateEntry>) {
        if let Some(e) = entry {
            if self.seen.insert(e as *const StateEntry) {
                self.entries.push(e);
            }
        }
    }
}

/// The members a timeline needs, for `$LAZY`: its senders and the targets of its member events.
pub(super) fn timeline_members(timeline: &[EventRecord]) -> HashSet<&str> {
    let mut users = HashSet::new();
    for r in timeline {
        users.insert(r.pdu.sender.as_str());
        if r.pdu.kind.to_string() == MEMBER {
            if let Some(key) = r.pdu.state_key.as_deref() {
                users.insert(key);
            }
        }
    }
    users
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(entries: &[(&str, &str)]) -> RequiredState {
        let owned: Vec<(String, String)> = entries
            .iter()
            .map(|(t, k)| ((*t).to_owned(), (*k).to_owned()))
            .collect();
        RequiredState::new(&owned)
    }

    const ALICE: &str = "@alice:test.local";
    const BOB: &str = "@bob:test.local";

    #[test]
    fn exact_entries_and_the_users_own_member_event() {
        let rs = spec(&[("m.room.name", ""), ("m.room.member", "$ME")]);
        let none = HashSet::new();
        assert!(rs.wants("m.room.name", "", ALICE, &none));
        assert!(!rs.wants("m.room.name", "x", ALICE, &none));
        assert!(!rs.wants("m.room.topic", "", ALICE, &none));
        assert!(rs.wants("m.room.member", ALICE, ALICE, &none));
        assert!(!rs.wants("m.room.member", BOB, ALICE, &none));
        assert!(!rs.lazy_members());
    }

    #[test]
    fn wildcards_for_the_type_or_the_key() {
        let none = HashSet::new();
        let all_children = spec(&[("m.space.child", "*")]);
        assert!(all_children.wants("m.space.child", "!a:x", ALICE, &none));
        assert!(!all_children.wants("m.space.parent", "!a:x", ALICE, &none));

        let any_type_empty_key = spec(&[("*", "")]);
        assert!(any_type_empty_key.wants("m.room.topic", "", ALICE, &none));
        assert!(!any_type_empty_key.wants("m.room.member", ALICE, ALICE, &none));

        let everything = spec(&[("*", "*")]);
        assert!(everything.wants("m.room.member", BOB, ALICE, &none));
        assert!(everything.wants("org.example.custom", "k", ALICE, &none));

        assert!(!spec(&[]).wants("m.room.name", "", ALICE, &none));
    }

    #[test]
    fn lazy_members_are_the_ones_named() {
        let rs = spec(&[("m.room.member", "$LAZY")]);
        assert!(rs.lazy_members());
        let lazy: HashSet<&str> = [BOB].into();
        assert!(rs.wants("m.room.member", BOB, ALICE, &lazy));
        assert!(!rs.wants("m.room.member", ALICE, ALICE, &lazy));
        // `$LAZY` of another type is a plain state key.
        let literal = spec(&[("org.example", "$LAZY")]);
        assert!(!literal.lazy_members());
        assert!(literal.wants("org.example", "$LAZY", ALICE, &lazy));
    }
}
