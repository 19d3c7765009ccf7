//! Conformance tests of writes as a whole: stream positions under concurrency, failed writes
//! rolling back, and concurrent writers.

use super::*;

/// Many concurrent writers of every positioned kind: positions are distinct, each writer's own
/// positions increase, readers never see the position go back, and the final position is the max.
pub async fn stream_positions_increase_under_concurrency(store: Arc<dyn Storage>) {
    const WRITERS: usize = 8;
    const WRITES: usize = 12;
    let alice = "@alice:localhost";
    let room_fixture = TestRoom::create(&*store, "!conc:localhost", alice, "q").await;
    let start = store.current_stream_pos().await.unwrap();
    let (room_id, snapshot) = (room_fixture.room_id.clone(), room_fixture.snapshot);

    let reader = {
        let store = store.clone();
        tokio::spawn(async move {
            let mut last = StreamPos::ZERO;
            for _ in 0..200 {
                let now = store.current_stream_pos().await.unwrap();
                assert!(
                    now >= last,
                    "current_stream_pos went back from {last} to {now}"
                );
                last = now;
                tokio::task::yield_now().await;
            }
        })
    };

    let mut tasks = tokio::task::JoinSet::new();
    for w in 0..WRITERS {
        let store = store.clone();
        let room_id = room_id.clone();
        tasks.spawn(async move {
            let user_id = user(&format!("@u{w}:localhost"));
            let mut positions = Vec::new();
            for i in 0..WRITES {
                let pos = match i % 4 {
                    0 => store
                        .set_account_data(&user_id, None, "m.x", &json!({"i": i}))
                        .await
                        .unwrap(),
                    1 => store
                        .set_presence(&user_id, "online", None, i as u64)
                        .await
                        .unwrap(),
                    2 => store
                        .set_receipt(ReceiptRecord {
                            room_id: room_id.clone(),
                            receipt_type: "m.read".into(),
                            user_id: user_id.clone(),
                            thread_id: None,
                            event_id: event("$qcreate"),
                            ts: i as u64,
                            stream_pos: StreamPos::ZERO,
                        })
                        .await
                        .unwrap(),
                    _ => {
                        let id = format!("$w{w}i{i}");
                        let pdu = pdu(
                            &id,
                            room_id.as_str(),
                            "@alice:localhost",
                            "m.room.message",
                            None,
                            json!({"i": i}),
                            3,
                            &[],
                        );
                        store
                            .persist_event(NewEvent {
                                pdu,
                                room: None,
                                state: NewState::Same(snapshot),
                                updates_current_state: false,
                                membership: None,
                                txn: None,
                                redaction: None,
                                forward_extremities: vec![event(&id)],
                                resolved_current_state: None,
                                destinations: Vec::new(),
                                push_actions: Vec::new(),
                            })
                            .await
                            .unwrap()
                            .stream_pos
                    }
                };
                positions.push(pos);
            }
            positions
        });
    }
    let mut all = Vec::new();
    while let Some(result) = tasks.join_next().await {
        let positions = result.expect("writer task panicked");
        assert!(
            positions.windows(2).all(|w| w[0] < w[1]),
            "a writer's positions increase: {positions:?}"
        );
        all.extend(positions);
    }
    reader.await.expect("reader task panicked");

    let distinct: BTreeSet<_> = all.iter().copied().collect();
    assert_eq!(distinct.len(), WRITERS * WRITES, "positions are distinct");
    assert!(all.iter().all(|p| *p > start));
    let max = distinct.iter().next_back().copied().unwrap();
    assert_eq!(store.current_stream_pos().await.unwrap(), max);

    let events = store
        .room_events(&room_id, max, Some(start), Direction::Backward, 1_000)
        .await
        .unwrap();
    assert_eq!(
        events.len(),
        WRITERS * WRITES / 4,
        "every concurrent event is in the timeline"
    );
    let by_pos: BTreeMap<_, _> = events
        .iter()
        .map(|e| (e.stream_pos, e.pdu.event_id.clone()))
        .collect();
    assert_eq!(by_pos.len(), events.len());
}

// ---- transactions -----------------------------------------------------------------------------

/// A write that fails half-way leaves nothing behind: no rows, no state change, no membership,
/// no room, and no stream position used up.
pub async fn failed_writes_roll_back(store: &dyn Storage) {
    let alice = "@alice:localhost";
    let bob = "@bob:localhost";
    let mut r = TestRoom::create(store, "!rb:localhost", alice, "rb").await;
    let start = store.current_stream_pos().await.unwrap();
    let extremities = store.forward_extremities(&r.room_id).await.unwrap();

    // A batch whose last event refers to a snapshot that does not exist.
    let join_pdu = r.next_pdu(
        bob,
        "m.room.member",
        Some(bob),
        json!({"membership": "join"}),
    );
    let mut join = r.new_event(join_pdu);
    join.membership = Some(MembershipChange {
        user_id: user(bob),
        membership: "join".into(),
    });
    join.txn = Some((device("DEV1"), "rb-txn".into()));
    let join_id = join.pdu.event_id.clone();
    let other_room = room("!rb2:localhost");
    let create_other = NewEvent {
        room: Some(NewRoom {
            room_id: other_room.clone(),
            version: RoomVersionId::V10,
            creator: user(alice),
            created_ms: 1,
        }),
        state: NewState::Changed {
            base: None,
            changes: vec![(key("m.room.create", ""), event("$rb2create"))],
        },
        ..loose_message("$rb2create", &other_room, 0, 1)
    };
    let broken = NewEvent {
        state: NewState::Changed {
            base: Some(SnapshotId::MAX),
            changes: vec![(key("m.room.topic", ""), event("$rbbroken"))],
        },
        ..loose_message("$rbbroken", &r.room_id, r.snapshot, 9)
    };
    let result = store.persist_events(vec![join, create_other, broken]).await;
    assert!(
        result.is_err(),
        "a batch with an unknown base snapshot fails"
    );
    assert!(
        store.get_event(&join_id).await.unwrap().is_none(),
        "first event rolled back"
    );
    assert!(store
        .get_event(&event("$rb2create"))
        .await
        .unwrap()
        .is_none());
    assert_eq!(
        store.room_info(&other_room).await.unwrap(),
        None,
        "room row rolled back"
    );
    assert_eq!(
        store.current_state(&r.room_id).await.unwrap(),
        r.state,
        "state rolled back"
    );
    assert!(
        store
            .room_members(&r.room_id)
            .await
            .unwrap()
            .iter()
            .all(|m| m.user_id != user(bob)),
        "membership rolled back"
    );
    assert_eq!(
        store
            .event_for_txn(&user(bob), "DEV1", "rb-txn")
            .await
            .unwrap(),
        None
    );
    assert_eq!(
        store.forward_extremities(&r.room_id).await.unwrap(),
        extremities
    );
    assert_eq!(
        store.current_stream_pos().await.unwrap(),
        start,
        "no position taken"
    );

    // A single event whose ID exists already.
    let duplicate = loose_message("$rbcreate", &r.room_id, r.snapshot, 9);
    assert!(
        store.persist_event(duplicate).await.is_err(),
        "duplicate event ID fails"
    );
    let original = store.get_event(&event("$rbcreate")).await.unwrap().unwrap();
    assert_eq!(
        original.pdu.kind.to_string(),
        "m.room.create",
        "original kept"
    );
    assert_eq!(store.current_stream_pos().await.unwrap(), start);

    // A session whose token exists already creates no device.
    store.create_user(new_user(alice, Some("h"))).await.unwrap();
    store
        .create_session(session(alice, "RB1", "rb-token", None))
        .await
        .unwrap();
    assert!(store
        .create_session(session(alice, "RB2", "rb-token", None))
        .await
        .is_err());
    assert_eq!(
        store.get_device(&user(alice), "RB2").await.unwrap(),
        None,
        "device rolled back"
    );

    // The store still works, and the next position follows the last committed one.
    let (_, next) = r.message(store, alice, "after").await;
    assert_eq!(
        next.stream_pos,
        start.next(),
        "failed writes used up no position"
    );
    assert_eq!(store.current_stream_pos().await.unwrap(), next.stream_pos);
}

// ---- concurrency ------------------------------------------------------------------------------

/// Concurrent writers that race for the same row: exactly one wins where one must, and
/// per-user counters never hand out the same ID twice.
pub async fn concurrent_writers_do_not_collide(store: Arc<dyn Storage>) {
    const TASKS: usize = 8;
    let alice = user("@alice:localhost");

    let mut tasks = tokio::task::JoinSet::new();
    for t in 0..TASKS {
        let store = store.clone();
        let alice = alice.clone();
        tasks.spawn(async move {
            let created = store
                .create_user(NewUser {
                    displayname: Some(format!("task {t}")),
                    ..new_user("@alice:localhost", None)
                })
                .await
                .unwrap();
            let aliased = store
                .create_alias(
                    &alias("#race:localhost"),
                    &room(&format!("!race{t}:localhost")),
                    &alice,
                )
                .await
                .unwrap();
            let mut filters = Vec::new();
            for i in 0..4 {
                filters.push((
                    store
                        .create_filter(&alice, &json!({"t": t, "i": i}))
                        .await
                        .unwrap(),
                    json!({"t": t, "i": i}),
                ));
            }
            (created, aliased, filters)
        });
    }
    let (mut created, mut aliased, mut filters) = (0, 0, Vec::new());
    while let Some(result) = tasks.join_next().await {
        let (c, a, f) = result.expect("writer task panicked");
        created += usize::from(c);
        aliased += usize::from(a);
        filters.extend(f);
    }
    assert_eq!(created, 1, "exactly one concurrent create_user wins");
    assert_eq!(aliased, 1, "exactly one concurrent create_alias wins");
    let ids: BTreeSet<_> = filters.iter().map(|(id, _)| id.clone()).collect();
    assert_eq!(ids.len(), TASKS * 4, "filter IDs are distinct");
    for (id, filter) in &filters {
        assert_eq!(
            store.get_filter(&alice, id).await.unwrap().as_ref(),
            Some(filter)
        );
    }
}

/// While writers append events (alone and in batches), every position a reader sees as current
/// has all events up to it readable: positions become visible in order, without gaps.
pub async fn readers_never_see_a_gap_in_positions(store: Arc<dyn Storage>) {
    const WRITERS: usize = 4;
    const ROUNDS: usize = 10;
    let fixture = TestRoom::create(&*store, "!gap:localhost", "@alice:localhost", "g").await;
    let start = store.current_stream_pos().await.unwrap();
    let (room_id, snapshot) = (fixture.room_id.clone(), fixture.snapshot);

    let done = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let reader = {
        let (store, room_id, done) = (store.clone(), room_id.clone(), done.clone());
        tokio::spawn(async move {
            let mut checks = 0;
            loop {
                let finished = done.load(std::sync::atomic::Ordering::Acquire);
                let now = store.current_stream_pos().await.unwrap();
                let events = store
                    .room_events(&room_id, start, Some(now), Direction::Forward, 10_000)
                    .await
                    .unwrap();
                let seen: Vec<i64> = events.iter().map(|e| e.stream_pos.0).collect();
                let expected: Vec<i64> = (start.0 + 1..=now.0).collect();
                assert_eq!(
                    seen, expected,
                    "every position up to the current one is readable"
                );
                checks += 1;
                if finished {
                    return checks;
                }
                tokio::task::yield_now().await;
            }
        })
    };

    let mut tasks = tokio::task::JoinSet::new();
    for w in 0..WRITERS {
        let (store, room_id) = (store.clone(), room_id.clone());
        tasks.spawn(async move {
            for i in 0..ROUNDS {
                if i % 2 == 0 {
                    store
                        .persist_event(loose_message(&format!("$g{w}x{i}"), &room_id, snapshot, 3))
                        .await
                        .unwrap();
                } else {
                    let batch = (0..3)
                        .map(|b| loose_message(&format!("$g{w}x{i}b{b}"), &room_id, snapshot, 3))
                        .collect();
                    let persisted = store.persist_events(batch).await.unwrap();
                    assert!(
                        persisted
                            .windows(2)
                            .all(|p| p[1].stream_pos == p[0].stream_pos.next()),
                        "a batch takes consecutive positions: {persisted:?}"
                    );
                }
            }
        });
    }
    while let Some(result) = tasks.join_next().await {
        result.expect("writer task panicked");
    }
    done.store(true, std::sync::atomic::Ordering::Release);
    let checks = reader.await.expect("reader task panicked");
    assert!(checks > 0);
    let total = WRITERS * (ROUNDS / 2 + 3 * (ROUNDS / 2));
    assert_eq!(
        store.current_stream_pos().await.unwrap().0 - start.0,
        i64::try_from(total).unwrap()
    );
}
