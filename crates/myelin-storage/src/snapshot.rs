//! The layout of stored state snapshots, shared by the backends: delta-compressed chains.
//!
//! A snapshot row names a base snapshot and stores only the keys it changes; reading one walks
//! the chain to its root and applies entries oldest first. Chains are cut at
//! [`MAX_DELTA_DEPTH`]: a snapshot that would be deeper is written in full (no base). The
//! backends run the SQL; what to write and when a chain is broken is decided here.

use ruma::OwnedEventId;

use crate::convert::corrupt;
use crate::{NewState, SnapshotId, StateKey, StateMap, StorageError, StorageResult};

/// The longest chain of delta snapshots behind a full one.
pub const MAX_DELTA_DEPTH: i64 = 50;

/// What to store for a new snapshot: its `state_snapshots` row (`base`, `depth`) and its
/// `state_snapshot_entries`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SnapshotRows {
    /// The snapshot this one is a delta on; `None` for a full snapshot.
    pub base: Option<SnapshotId>,
    /// How many deltas lie between this snapshot and a full one (0 for a full one).
    pub depth: i64,
    pub entries: StateMap,
}

impl SnapshotRows {
    /// `changes` as a delta on `base` (of depth `base_depth`), or `None` when that chain would
    /// grow past [`MAX_DELTA_DEPTH`] and the snapshot must be written in full.
    pub fn delta(
        base: SnapshotId,
        base_depth: i64,
        changes: &[(StateKey, OwnedEventId)],
    ) -> Option<SnapshotRows> {
        (base_depth < MAX_DELTA_DEPTH).then(|| SnapshotRows {
            base: Some(base),
            depth: base_depth + 1,
            entries: changes.iter().cloned().collect(),
        })
    }

    /// A full snapshot: `state` (the base's whole state, or empty) with `changes` applied.
    pub fn full(mut state: StateMap, changes: &[(StateKey, OwnedEventId)]) -> SnapshotRows {
        state.extend(changes.iter().cloned());
        SnapshotRows {
            base: None,
            depth: 0,
            entries: state,
        }
    }
}

/// Checks a snapshot's chain as read oldest first, `(id, base)` per row: it must exist and
/// start at a full snapshot (else it is broken, or longer than a chain may be).
pub fn check_chain(
    snapshot: SnapshotId,
    chain: &[(SnapshotId, Option<SnapshotId>)],
) -> StorageResult<()> {
    match chain.first() {
        None => Err(StorageError::Backend(format!(
            "unknown state snapshot {snapshot}"
        ))),
        Some((_, Some(_))) => Err(corrupt(
            "state snapshot",
            format!("chain of snapshot {snapshot} is broken or too long"),
        )),
        Some((_, None)) => Ok(()),
    }
}

/// The error for a new snapshot whose base does not exist.
pub fn unknown_base(base: SnapshotId) -> StorageError {
    StorageError::Backend(format!("unknown base state snapshot {base}"))
}

/// How a room's `current_state` rows move to `snapshot`, the state after an event stored with
/// `state`, from the room's current snapshot `current`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CurrentStateMove<'a> {
    /// The rows already are that state.
    Stay,
    /// `snapshot` is `current` with these changes: upsert just them.
    Delta(&'a [(StateKey, OwnedEventId)]),
    /// Rewrite the rows from `snapshot`'s full state; also when the room has no current snapshot
    /// (NULL: after a resolved current state).
    Full,
}

impl<'a> CurrentStateMove<'a> {
    pub fn new(
        current: Option<SnapshotId>,
        snapshot: SnapshotId,
        state: &'a NewState,
    ) -> CurrentStateMove<'a> {
        if current == Some(snapshot) {
            return CurrentStateMove::Stay;
        }
        match state {
            NewState::Changed {
                base: Some(base),
                changes,
            } if current == Some(*base) => CurrentStateMove::Delta(changes),
            _ => CurrentStateMove::Full,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(kind: &str) -> StateKey {
        (kind.to_owned(), String::new())
    }

    fn event(n: u32) -> OwnedEventId {
        OwnedEventId::try_from(format!("$e{n}")).expect("event ID")
    }

    #[test]
    fn deltas_stop_at_the_maximum_depth() {
        let changes = [(key("a"), event(1))];
        let delta = SnapshotRows::delta(7, MAX_DELTA_DEPTH - 1, &changes).expect("a delta");
        assert_eq!((delta.base, delta.depth), (Some(7), MAX_DELTA_DEPTH));
        assert_eq!(SnapshotRows::delta(7, MAX_DELTA_DEPTH, &changes), None);
    }

    #[test]
    fn the_last_change_of_a_key_wins() {
        let changes = [
            (key("a"), event(1)),
            (key("b"), event(2)),
            (key("a"), event(3)),
        ];
        let delta = SnapshotRows::delta(1, 0, &changes).expect("a delta");
        assert_eq!(delta.entries.get(&key("a")), Some(&event(3)));
        let full = SnapshotRows::full(StateMap::from([(key("c"), event(4))]), &changes);
        assert_eq!((full.base, full.depth, full.entries.len()), (None, 0, 3));
        assert_eq!(full.entries.get(&key("a")), Some(&event(3)));
    }

    #[test]
    fn a_chain_must_start_at_a_full_snapshot() {
        assert!(check_chain(3, &[(1, None), (2, Some(1)), (3, Some(2))]).is_ok());
        assert!(matches!(check_chain(3, &[]), Err(StorageError::Backend(_))));
        assert!(matches!(
            check_chain(3, &[(2, Some(1)), (3, Some(2))]),
            Err(StorageError::Corrupt(_))
        ));
    }

    #[test]
    fn current_state_moves_by_delta_only_from_the_base() {
        let state = NewState::Changed {
            base: Some(1),
            changes: vec![(key("a"), event(1))],
        };
        assert_eq!(
            CurrentStateMove::new(Some(2), 2, &state),
            CurrentStateMove::Stay
        );
        assert!(matches!(
            CurrentStateMove::new(Some(1), 2, &state),
            CurrentStateMove::Delta([_])
        ));
        assert_eq!(
            CurrentStateMove::new(Some(5), 2, &state),
            CurrentStateMove::Full
        );
        assert_eq!(
            CurrentStateMove::new(None, 2, &state),
            CurrentStateMove::Full
        );
        let same = NewState::Same(1);
        assert_eq!(
            CurrentStateMove::new(Some(1), 2, &same),
            CurrentStateMove::Full
        );
    }
}
