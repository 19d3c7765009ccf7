//! Conformance tests of room state: events with their state snapshots, delta chains, and the
//! current state following (or replaced by a resolved) snapshot.

use super::*;

pub async fn events_state_and_snapshots(store: &dyn Storage) {
    let start = store.current_stream_pos().await.unwrap();
    let room_id = "!r:localhost";
    let alice = "@alice:localhost";
    let mut r = TestRoom::create(store, room_id, alice, "r").await;

    let info = store
        .room_info(&r.room_id)
        .await
        .unwrap()
        .expect("room exists");
    assert_eq!(info.room_id, r.room_id);
    assert_eq!(info.version, RoomVersionId::V10);
    assert_eq!(info.creator, user(alice));
    assert_eq!(
        store.room_info(&room("!other:localhost")).await.unwrap(),
        None
    );

    let create_id = event("$rcreate");
    let create = store
        .get_event(&create_id)
        .await
        .unwrap()
        .expect("create event stored");
    let after_create = create.state_snapshot;
    assert!(create.stream_pos > start);
    assert_eq!(
        store.state_at_snapshot(after_create).await.unwrap(),
        StateMap::from([(key("m.room.create", ""), create_id.clone())])
    );

    let (pl_id, pl) = r
        .state_event(
            store,
            "m.room.power_levels",
            "",
            json!({"users": {alice: 100}}),
        )
        .await;
    assert_eq!(store.current_stream_pos().await.unwrap(), pl.stream_pos);

    let msg_pdu = r.next_pdu(
        alice,
        "m.room.message",
        None,
        json!({"msgtype": "m.text", "body": "hello"}),
    );
    let msg_id = msg_pdu.event_id.clone();
    let original_json: Value = serde_json::from_str(msg_pdu.json.get()).unwrap();
    let mut new_event = r.new_event(msg_pdu);
    new_event.txn = Some((device("DEV1"), "txn1".into()));
    let msg = r.append(store, new_event).await;
    assert!(msg.stream_pos > pl.stream_pos, "positions increase");
    assert_eq!(
        msg.state_snapshot, pl.state_snapshot,
        "NewState::Same reuses the snapshot"
    );
    assert_eq!(store.current_stream_pos().await.unwrap(), msg.stream_pos);

    let expected_state = StateMap::from([
        (key("m.room.create", ""), create_id.clone()),
        (key("m.room.member", alice), event("$r1")),
        (key("m.room.power_levels", ""), pl_id.clone()),
    ]);
    assert_eq!(r.state, expected_state);
    assert_eq!(
        store.current_state(&r.room_id).await.unwrap(),
        expected_state
    );
    assert_eq!(
        store.state_at_snapshot(pl.state_snapshot).await.unwrap(),
        expected_state
    );
    let member = store.get_event(&event("$r1")).await.unwrap().unwrap();
    assert_eq!(
        store
            .state_at_snapshot(member.state_snapshot)
            .await
            .unwrap(),
        StateMap::from([
            (key("m.room.create", ""), create_id.clone()),
            (key("m.room.member", alice), event("$r1"))
        ])
    );
    assert!(store
        .current_state(&room("!other:localhost"))
        .await
        .unwrap()
        .is_empty());
    assert_eq!(
        store.forward_extremities(&r.room_id).await.unwrap(),
        std::slice::from_ref(&msg_id)
    );

    let record = store
        .get_event(&msg_id)
        .await
        .unwrap()
        .expect("message stored");
    assert_eq!(record.pdu.event_id, msg_id);
    assert_eq!(record.pdu.room_id, r.room_id);
    assert_eq!(record.pdu.sender, user(alice));
    assert_eq!(record.pdu.kind.to_string(), "m.room.message");
    assert_eq!(record.pdu.prev_events, std::slice::from_ref(&pl_id));
    assert!(!record.pdu.rejected);
    assert_eq!(
        serde_json::from_str::<Value>(record.pdu.json.get()).unwrap(),
        original_json,
        "JSON kept"
    );
    assert_eq!(record.stream_pos, msg.stream_pos);
    assert_eq!(record.state_snapshot, msg.state_snapshot);
    assert_eq!(record.txn, Some((device("DEV1"), "txn1".to_owned())));
    assert_eq!(record.redacted_by, None);
    let pl_record = store.get_event(&pl_id).await.unwrap().unwrap();
    assert_eq!(pl_record.pdu.state_key.as_deref(), Some(""));
    assert_eq!(pl_record.txn, None);
    assert!(store.get_event(&event("$unknown")).await.unwrap().is_none());

    let found = store
        .get_events(&[create_id.clone(), msg_id.clone(), event("$unknown")])
        .await
        .unwrap();
    let found: BTreeSet<_> = ids(&found).into_iter().collect();
    assert_eq!(found, BTreeSet::from([create_id, msg_id]));
    assert!(store.get_events(&[]).await.unwrap().is_empty());

    // A fork: extremities are replaced by whatever the caller says.
    let side = pdu(
        "$side",
        room_id,
        alice,
        "m.room.message",
        None,
        json!({"body": "side"}),
        3,
        std::slice::from_ref(&pl_id),
    );
    let mut side_event = r.new_event(side);
    side_event.forward_extremities = vec![r.last.clone(), event("$side")];
    store.persist_event(side_event).await.unwrap();
    let extremities: BTreeSet<_> = store
        .forward_extremities(&r.room_id)
        .await
        .unwrap()
        .into_iter()
        .collect();
    assert_eq!(
        extremities,
        BTreeSet::from([r.last.clone(), event("$side")])
    );
}

pub async fn snapshot_chains(store: &dyn Storage) {
    let alice = "@alice:localhost";
    let mut r = TestRoom::create(store, "!chain:localhost", alice, "c").await;
    let mut expected: Vec<(SnapshotId, StateMap)> = vec![(r.snapshot, r.state.clone())];
    // Long enough to cross any sensible delta-chain limit several times.
    for i in 0..130 {
        r.state_event(store, "m.test", &format!("k{}", i % 7), json!({"i": i}))
            .await;
        expected.push((r.snapshot, r.state.clone()));
    }
    for (snapshot, state) in &expected {
        assert_eq!(
            &store.state_at_snapshot(*snapshot).await.unwrap(),
            state,
            "snapshot {snapshot}"
        );
        // A few keys, looked up alone, agree with the whole state; absent keys are left out.
        let keys = [
            key("m.test", "k0"),
            key("m.test", "k6"),
            key("m.room.create", ""),
            key("m.absent", ""),
        ];
        let wanted: StateMap = state
            .iter()
            .filter(|(k, _)| keys.contains(k))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        assert_eq!(
            store.state_entries_at(*snapshot, &keys).await.unwrap(),
            wanted,
            "entries of snapshot {snapshot}"
        );
    }
    assert_eq!(store.current_state(&r.room_id).await.unwrap(), r.state);

    // A snapshot based on an old one, off the current state.
    let (old_snapshot, old_state) = expected[3].clone();
    let branch = pdu(
        "$branch",
        r.room_id.as_str(),
        alice,
        "m.room.topic",
        Some(""),
        json!({"topic": "t"}),
        5,
        &[],
    );
    let persisted = store
        .persist_event(NewEvent {
            pdu: branch,
            room: None,
            state: NewState::Changed {
                base: Some(old_snapshot),
                changes: vec![
                    (key("m.room.topic", ""), event("$branch")),
                    (key("m.test", "k0"), event("$branch")),
                ],
            },
            updates_current_state: false,
            membership: None,
            txn: None,
            redaction: None,
            forward_extremities: vec![r.last.clone(), event("$branch")],
            resolved_current_state: None,
            destinations: Vec::new(),
            push_actions: Vec::new(),
        })
        .await
        .unwrap();
    let mut branch_state = old_state;
    branch_state.insert(key("m.room.topic", ""), event("$branch"));
    branch_state.insert(key("m.test", "k0"), event("$branch"));
    assert_eq!(
        store
            .state_at_snapshot(persisted.state_snapshot)
            .await
            .unwrap(),
        branch_state
    );
    assert_eq!(
        store.current_state(&r.room_id).await.unwrap(),
        r.state,
        "updates_current_state = false"
    );
    for (snapshot, state) in expected.iter().rev().take(3) {
        assert_eq!(
            &store.state_at_snapshot(*snapshot).await.unwrap(),
            state,
            "older snapshots are untouched"
        );
    }

    // A snapshot built from nothing.
    let lone = pdu(
        "$lone",
        r.room_id.as_str(),
        alice,
        "m.room.name",
        Some(""),
        json!({"name": "n"}),
        6,
        &[],
    );
    let persisted = store
        .persist_event(NewEvent {
            pdu: lone,
            room: None,
            state: NewState::Changed {
                base: None,
                changes: vec![(key("m.room.name", ""), event("$lone"))],
            },
            updates_current_state: false,
            membership: None,
            txn: None,
            redaction: None,
            forward_extremities: vec![r.last.clone()],
            resolved_current_state: None,
            destinations: Vec::new(),
            push_actions: Vec::new(),
        })
        .await
        .unwrap();
    assert_eq!(
        store
            .state_at_snapshot(persisted.state_snapshot)
            .await
            .unwrap(),
        StateMap::from([(key("m.room.name", ""), event("$lone"))])
    );
}

pub async fn current_state_follows_snapshot(store: &dyn Storage) {
    let alice = "@alice:localhost";
    let bob = "@bob:localhost";
    let mut r = TestRoom::create(store, "!cs:localhost", alice, "s").await;
    r.member(store, bob, bob, "join").await;
    let base_state = r.state.clone();
    let base_snapshot = r.snapshot;

    // A state event that does not move the current state (e.g. on a side branch).
    let topic = r.next_pdu(alice, "m.room.topic", Some(""), json!({"topic": "side"}));
    let topic_id = topic.event_id.clone();
    let mut side = r.new_event(topic);
    side.updates_current_state = false;
    let side = store.persist_event(side).await.unwrap();
    assert_eq!(store.current_state(&r.room_id).await.unwrap(), base_state);

    // A later event whose (resolved) state is that branch: the current state moves to it.
    let merge = pdu(
        "$smerge",
        r.room_id.as_str(),
        alice,
        "m.room.message",
        None,
        json!({"body": "m"}),
        10,
        &[],
    );
    let merged = store
        .persist_event(NewEvent {
            pdu: merge,
            room: None,
            state: NewState::Same(side.state_snapshot),
            updates_current_state: true,
            membership: None,
            txn: None,
            redaction: None,
            forward_extremities: vec![event("$smerge")],
            resolved_current_state: None,
            destinations: Vec::new(),
            push_actions: Vec::new(),
        })
        .await
        .unwrap();
    let mut with_topic = base_state.clone();
    with_topic.insert(key("m.room.topic", ""), topic_id.clone());
    assert_eq!(store.current_state(&r.room_id).await.unwrap(), with_topic);
    r.snapshot = merged.state_snapshot;
    r.state = with_topic.clone();
    r.last = event("$smerge");

    // A rejected event changes neither the current state nor memberships.
    let mut bad = r.next_pdu(
        bob,
        "m.room.member",
        Some(alice),
        json!({"membership": "ban"}),
    );
    bad.rejected = true;
    let bad_id = bad.event_id.clone();
    let mut rejected = r.new_event(bad);
    rejected.membership = Some(MembershipChange {
        user_id: user(alice),
        membership: "ban".into(),
    });
    let rejected = store.persist_event(rejected).await.unwrap();
    assert!(rejected.stream_pos > merged.stream_pos);
    assert_eq!(store.current_state(&r.room_id).await.unwrap(), with_topic);
    let alice_membership = store
        .room_members(&r.room_id)
        .await
        .unwrap()
        .into_iter()
        .find(|m| m.user_id == user(alice))
        .expect("alice is a member");
    assert_eq!(alice_membership.membership, "join");
    let stored = store
        .get_event(&bad_id)
        .await
        .unwrap()
        .expect("rejected events are stored");
    assert!(stored.pdu.rejected);

    // Moving to a snapshot with fewer keys removes the others from the current state.
    let reset = pdu(
        "$sreset",
        r.room_id.as_str(),
        alice,
        "m.room.message",
        None,
        json!({"body": "r"}),
        11,
        &[],
    );
    store
        .persist_event(NewEvent {
            pdu: reset,
            room: None,
            state: NewState::Same(base_snapshot),
            updates_current_state: true,
            membership: None,
            txn: None,
            redaction: None,
            forward_extremities: vec![event("$sreset")],
            resolved_current_state: None,
            destinations: Vec::new(),
            push_actions: Vec::new(),
        })
        .await
        .unwrap();
    assert_eq!(store.current_state(&r.room_id).await.unwrap(), base_state);
}

/// A resolved current state replaces the current state; the room then has no current snapshot,
/// so the next move rewrites it in full (even back to the snapshot it was at before).
pub async fn resolved_current_state_replaces_current_state(store: &dyn Storage) {
    let alice = "@alice:localhost";
    let bob = "@bob:localhost";
    let mut r = TestRoom::create(store, "!res:localhost", alice, "res").await;
    r.member(store, bob, bob, "join").await;
    r.state_event(store, "m.room.topic", "", json!({"topic": "t"}))
        .await;
    let full = r.state.clone();
    let snapshot = r.snapshot;

    // A fork resolved to a state that is no stored snapshot.
    let resolved = StateMap::from([
        (key("m.room.create", ""), event("$rescreate")),
        (
            key("m.room.member", alice),
            full[&key("m.room.member", alice)].clone(),
        ),
        (key("m.room.name", ""), event("$resname")),
    ]);
    let merge = r.next_pdu(alice, "m.room.message", None, json!({"body": "merge"}));
    let mut merge = r.new_event(merge);
    merge.resolved_current_state = Some(resolved.clone());
    let merged = r.append(store, merge).await;
    assert_eq!(store.current_state(&r.room_id).await.unwrap(), resolved);
    assert_eq!(
        store
            .state_at_snapshot(merged.state_snapshot)
            .await
            .unwrap(),
        full,
        "the event's snapshot is still the state after it"
    );

    // Ignored when the event does not move the current state, or is rejected.
    let side = r.next_pdu(alice, "m.room.message", None, json!({"body": "side"}));
    let mut side = r.new_event(side);
    side.updates_current_state = false;
    side.resolved_current_state = Some(StateMap::new());
    store.persist_event(side).await.unwrap();
    let mut bad = r.next_pdu(alice, "m.room.message", None, json!({"body": "bad"}));
    bad.rejected = true;
    let mut bad = r.new_event(bad);
    bad.resolved_current_state = Some(StateMap::new());
    store.persist_event(bad).await.unwrap();
    assert_eq!(store.current_state(&r.room_id).await.unwrap(), resolved);

    // Back to the snapshot the current state was at before the fork.
    assert_eq!(r.snapshot, snapshot);
    r.message(store, alice, "back").await;
    assert_eq!(store.current_state(&r.room_id).await.unwrap(), full);

    // Resolved again, then a state event on top of the old snapshot (a delta to it).
    let again = r.next_pdu(alice, "m.room.message", None, json!({"body": "again"}));
    let mut again = r.new_event(again);
    again.resolved_current_state = Some(resolved.clone());
    r.append(store, again).await;
    assert_eq!(store.current_state(&r.room_id).await.unwrap(), resolved);
    r.state_event(store, "m.room.name", "", json!({"name": "n"}))
        .await;
    assert_eq!(r.state.len(), full.len() + 1);
    assert_eq!(store.current_state(&r.room_id).await.unwrap(), r.state);
}
