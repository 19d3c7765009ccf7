//! Conformance tests of the rest of [`RoomStore`](crate::RoomStore): redactions, timelines and
//! pagination, memberships, aliases, the room directory, transaction IDs and timestamps.

use super::*;

pub async fn redactions(store: &dyn Storage) {
    let alice = "@alice:localhost";
    let mut r = TestRoom::create(store, "!red:localhost", alice, "x").await;
    let (target, _) = r.message(store, alice, "secret").await;
    let target_record = store.get_event(&target).await.unwrap().unwrap();
    let mut redacted: Value = serde_json::from_str(target_record.pdu.json.get()).unwrap();
    redacted["content"] = json!({});
    let redacted = serde_json::value::to_raw_value(&redacted).unwrap();

    let redaction = r.next_pdu(
        alice,
        "m.room.redaction",
        None,
        json!({"redacts": target.as_str()}),
    );
    let redaction_id = redaction.event_id.clone();
    let mut new_event = r.new_event(redaction);
    new_event.redaction = Some((target.clone(), redacted));
    r.append(store, new_event).await;

    let after = store.get_event(&target).await.unwrap().unwrap();
    assert_eq!(after.redacted_by, Some(redaction_id.clone()));
    assert_eq!(after.pdu.content_value(), json!({}));
    assert!(!after.pdu.json.get().contains("secret"));
    assert_eq!(
        after.stream_pos, target_record.stream_pos,
        "redaction keeps the target's place"
    );
    let redaction = store.get_event(&redaction_id).await.unwrap().unwrap();
    assert_eq!(redaction.pdu.redacts, Some(target.clone()));
    assert_eq!(redaction.redacted_by, None);

    // Redacting an event we do not have is not an error.
    let blind = r.next_pdu(
        alice,
        "m.room.redaction",
        None,
        json!({"redacts": "$missing"}),
    );
    let blind_id = blind.event_id.clone();
    let mut new_event = r.new_event(blind);
    new_event.redaction = Some((
        event("$missing"),
        serde_json::value::to_raw_value(&json!({})).unwrap(),
    ));
    r.append(store, new_event).await;
    assert!(store.get_event(&blind_id).await.unwrap().is_some());
    assert!(store.get_event(&event("$missing")).await.unwrap().is_none());
}

pub async fn rooms_with_new_events(store: &dyn Storage) {
    let alice = "@alice:localhost";
    let mut a = TestRoom::create(store, "!ra:localhost", alice, "ra").await;
    let mut b = TestRoom::create(store, "!rb:localhost", alice, "rb").await;
    let start = store.current_stream_pos().await.unwrap();
    let sorted = |mut v: Vec<OwnedRoomId>| {
        v.sort();
        v
    };
    assert_eq!(
        store.rooms_with_events_between(start, start).await.unwrap(),
        Vec::<OwnedRoomId>::new()
    );
    let (_, in_a) = a.message(store, alice, "one").await;
    let after_a = store.current_stream_pos().await.unwrap();
    assert_eq!(
        store
            .rooms_with_events_between(start, after_a)
            .await
            .unwrap(),
        vec![a.room_id.clone()]
    );
    a.message(store, alice, "two").await;
    b.message(store, alice, "three").await;
    let now = store.current_stream_pos().await.unwrap();
    assert_eq!(
        sorted(store.rooms_with_events_between(start, now).await.unwrap()),
        sorted(vec![a.room_id.clone(), b.room_id.clone()]),
        "each room once"
    );
    // The lower bound is exclusive, the upper inclusive.
    assert_eq!(
        store
            .rooms_with_events_between(in_a.stream_pos, in_a.stream_pos)
            .await
            .unwrap(),
        Vec::<OwnedRoomId>::new()
    );
    assert_eq!(
        store
            .rooms_with_events_between(StreamPos(in_a.stream_pos.0 - 1), in_a.stream_pos)
            .await
            .unwrap(),
        vec![a.room_id.clone()]
    );
}

pub async fn room_events_pagination(store: &dyn Storage) {
    let alice = "@alice:localhost";
    let mut a = TestRoom::create(store, "!a:localhost", alice, "a").await;
    let mut b = TestRoom::create(store, "!b:localhost", alice, "b").await;
    let mut msgs: Vec<(OwnedEventId, StreamPos)> = Vec::new();
    for i in 0..10 {
        let (id, p) = a.message(store, alice, &format!("a{i}")).await;
        msgs.push((id, p.stream_pos));
        if i % 2 == 0 {
            b.message(store, alice, &format!("b{i}")).await;
        }
    }
    let now = store.current_stream_pos().await.unwrap();
    let msg_ids = |range: std::ops::Range<usize>| -> Vec<OwnedEventId> {
        msgs[range].iter().map(|(id, _)| id.clone()).collect()
    };
    let rev = |mut v: Vec<OwnedEventId>| {
        v.reverse();
        v
    };

    let all = store
        .room_events(&a.room_id, now, None, Direction::Backward, 100)
        .await
        .unwrap();
    assert_eq!(all.len(), 12, "create, join and 10 messages");
    assert!(all.iter().all(|e| e.pdu.room_id == a.room_id));
    assert!(
        all.windows(2).all(|w| w[0].stream_pos > w[1].stream_pos),
        "newest first"
    );
    assert_eq!(ids(&all[..10]), rev(msg_ids(0..10)));
    assert_eq!(ids(&all[10..]), [event("$a1"), event("$acreate")]);

    let page = store
        .room_events(&a.room_id, now, None, Direction::Backward, 3)
        .await
        .unwrap();
    assert_eq!(ids(&page), rev(msg_ids(7..10)));
    let page = store
        .room_events(&a.room_id, msgs[5].1, None, Direction::Backward, 2)
        .await
        .unwrap();
    assert_eq!(ids(&page), rev(msg_ids(4..6)), "backward includes `from`");
    let page = store
        .room_events(
            &a.room_id,
            msgs[8].1,
            Some(msgs[5].1),
            Direction::Backward,
            100,
        )
        .await
        .unwrap();
    assert_eq!(ids(&page), rev(msg_ids(6..9)), "backward excludes `to`");

    let page = store
        .room_events(&a.room_id, msgs[2].1, None, Direction::Forward, 3)
        .await
        .unwrap();
    assert_eq!(
        ids(&page),
        msg_ids(3..6),
        "forward excludes `from`, oldest first"
    );
    let page = store
        .room_events(
            &a.room_id,
            msgs[2].1,
            Some(msgs[4].1),
            Direction::Forward,
            100,
        )
        .await
        .unwrap();
    assert_eq!(ids(&page), msg_ids(3..5), "forward includes `to`");
    let page = store
        .room_events(&a.room_id, StreamPos::ZERO, None, Direction::Forward, 2)
        .await
        .unwrap();
    assert_eq!(ids(&page), [event("$acreate"), event("$a1")]);
    assert!(store
        .room_events(&a.room_id, now, None, Direction::Forward, 10)
        .await
        .unwrap()
        .is_empty());
    assert!(store
        .room_events(&a.room_id, now, None, Direction::Backward, 0)
        .await
        .unwrap()
        .is_empty());
    assert!(store
        .room_events(&room("!none:localhost"), now, None, Direction::Backward, 10)
        .await
        .unwrap()
        .is_empty());

    let b_events = store
        .room_events(&b.room_id, now, None, Direction::Backward, 100)
        .await
        .unwrap();
    assert_eq!(b_events.len(), 7);
    assert!(b_events.iter().all(|e| e.pdu.room_id == b.room_id));
}

pub async fn memberships(store: &dyn Storage) {
    let alice = "@alice:localhost";
    let bob = "@bob:localhost";
    let mut r1 = TestRoom::create(store, "!m1:localhost", alice, "m").await;
    let mut r2 = TestRoom::create(store, "!m2:localhost", alice, "n").await;
    let (invite_id, invite) = r1.member(store, alice, bob, "invite").await;
    let r1_id = r1.room_id.clone();
    let bob_in_r1 = move |records: Vec<crate::MembershipRecord>| {
        records
            .into_iter()
            .find(|m| m.room_id == r1_id && m.user_id == user(bob))
            .expect("bob has a membership")
    };
    let m = bob_in_r1(store.memberships_of_user(&user(bob)).await.unwrap());
    assert_eq!(
        (
            m.membership.as_str(),
            &m.event_id,
            m.stream_pos,
            m.forgotten
        ),
        ("invite", &invite_id, invite.stream_pos, false)
    );
    assert_eq!(m.joined_pos, None, "an invitee has never joined");

    let (_, join) = r1.member(store, bob, bob, "join").await;
    let (leave_id, leave) = r1.member(store, bob, bob, "leave").await;
    let m = bob_in_r1(store.room_members(&r1.room_id).await.unwrap());
    assert_eq!(
        (m.membership.as_str(), &m.event_id, m.stream_pos),
        ("leave", &leave_id, leave.stream_pos)
    );
    assert_eq!(
        m.joined_pos,
        Some(join.stream_pos),
        "the last join is kept after leaving"
    );

    store.forget_room(&user(bob), &r1.room_id).await.unwrap();
    assert!(bob_in_r1(store.memberships_of_user(&user(bob)).await.unwrap()).forgotten);
    store
        .forget_room(&user(bob), &room("!unknown:localhost"))
        .await
        .unwrap();

    let (rejoin_id, rejoin) = r1.member(store, bob, bob, "join").await;
    let m = bob_in_r1(store.memberships_of_user(&user(bob)).await.unwrap());
    assert_eq!(
        (
            m.membership.as_str(),
            &m.event_id,
            m.stream_pos,
            m.forgotten
        ),
        ("join", &rejoin_id, rejoin.stream_pos, false)
    );
    assert_eq!(m.joined_pos, Some(rejoin.stream_pos), "a rejoin moves it");
    r1.member(store, bob, bob, "join").await;
    let m = bob_in_r1(store.memberships_of_user(&user(bob)).await.unwrap());
    assert_eq!(
        m.joined_pos,
        Some(rejoin.stream_pos),
        "a profile change (join to join) keeps it"
    );

    r2.member(store, alice, bob, "invite").await;
    let mut bob_rooms: Vec<_> = store
        .memberships_of_user(&user(bob))
        .await
        .unwrap()
        .into_iter()
        .map(|m| (m.room_id, m.membership))
        .collect();
    bob_rooms.sort();
    assert_eq!(
        bob_rooms,
        [
            (r1.room_id.clone(), "join".to_owned()),
            (r2.room_id.clone(), "invite".to_owned())
        ]
    );
    let mut alice_rooms: Vec<_> = store
        .memberships_of_user(&user(alice))
        .await
        .unwrap()
        .into_iter()
        .map(|m| m.room_id)
        .collect();
    alice_rooms.sort();
    assert_eq!(alice_rooms, [r1.room_id.clone(), r2.room_id.clone()]);

    let mut members: Vec<_> = store
        .room_members(&r1.room_id)
        .await
        .unwrap()
        .into_iter()
        .map(|m| (m.user_id.to_string(), m.membership))
        .collect();
    members.sort();
    assert_eq!(
        members,
        [
            (alice.to_owned(), "join".to_owned()),
            (bob.to_owned(), "join".to_owned())
        ]
    );
    assert!(store
        .room_members(&room("!unknown:localhost"))
        .await
        .unwrap()
        .is_empty());
    assert!(store
        .memberships_of_user(&user("@nobody:localhost"))
        .await
        .unwrap()
        .is_empty());
}

pub async fn room_directory(store: &dyn Storage) {
    let (r1, r2, r3) = (
        room("!dir1:localhost"),
        room("!dir2:localhost"),
        room("!dir3:localhost"),
    );
    assert!(store.published_rooms().await.unwrap().is_empty());
    assert!(!store.is_room_published(&r1).await.unwrap());

    store.set_room_published(&r2, true).await.unwrap();
    store.set_room_published(&r1, true).await.unwrap();
    store.set_room_published(&r1, true).await.unwrap(); // idempotent
    store.set_room_published(&r3, false).await.unwrap(); // never published: no-op
    assert!(store.is_room_published(&r1).await.unwrap());
    assert!(!store.is_room_published(&r3).await.unwrap());
    assert_eq!(
        store.published_rooms().await.unwrap(),
        [r1.clone(), r2.clone()],
        "ordered by room ID"
    );

    store.set_room_published(&r1, false).await.unwrap();
    assert!(!store.is_room_published(&r1).await.unwrap());
    assert_eq!(
        store.published_rooms().await.unwrap(),
        std::slice::from_ref(&r2)
    );
    store.set_room_published(&r1, true).await.unwrap();
    assert_eq!(store.published_rooms().await.unwrap(), [r1, r2]);
}

pub async fn aliases(store: &dyn Storage) {
    let alice = user("@alice:localhost");
    let (r1, r2) = (room("!al1:localhost"), room("!al2:localhost"));
    let (a, b, c) = (
        alias("#a:localhost"),
        alias("#b:localhost"),
        alias("#c:localhost"),
    );
    assert!(store.create_alias(&a, &r1, &alice).await.unwrap());
    assert!(
        !store
            .create_alias(&a, &r2, &user("@bob:localhost"))
            .await
            .unwrap(),
        "taken"
    );
    assert_eq!(
        store.resolve_alias(&a).await.unwrap(),
        Some((r1.clone(), alice.clone()))
    );
    assert!(store.create_alias(&b, &r1, &alice).await.unwrap());
    assert!(store.create_alias(&c, &r2, &alice).await.unwrap());
    let mut of_r1 = store.aliases_of_room(&r1).await.unwrap();
    of_r1.sort();
    assert_eq!(of_r1, ["#a:localhost", "#b:localhost"]);
    assert_eq!(
        store
            .resolve_alias(&alias("#none:localhost"))
            .await
            .unwrap(),
        None
    );

    assert!(store.delete_alias(&a).await.unwrap());
    assert!(!store.delete_alias(&a).await.unwrap());
    assert_eq!(store.resolve_alias(&a).await.unwrap(), None);
    assert_eq!(store.aliases_of_room(&r1).await.unwrap(), ["#b:localhost"]);
    assert!(
        store.create_alias(&a, &r2, &alice).await.unwrap(),
        "a deleted alias can be reused"
    );
    assert_eq!(
        store.resolve_alias(&a).await.unwrap(),
        Some((r2.clone(), alice.clone()))
    );
    assert!(store
        .aliases_of_room(&room("!none:localhost"))
        .await
        .unwrap()
        .is_empty());
}

pub async fn txn_ids(store: &dyn Storage) {
    let alice = "@alice:localhost";
    let bob = "@bob:localhost";
    let mut r = TestRoom::create(store, "!t:localhost", alice, "t").await;
    let send = |r: &mut TestRoom, sender: &str, dev: &str, txn: &str| {
        let pdu = r.next_pdu(sender, "m.room.message", None, json!({"body": txn}));
        let mut new_event = r.new_event(pdu);
        new_event.txn = Some((device(dev), txn.to_owned()));
        new_event
    };
    let first = send(&mut r, alice, "DEV1", "t1");
    let first_id = first.pdu.event_id.clone();
    r.append(store, first).await;
    let same_txn_other_device = send(&mut r, alice, "DEV2", "t1");
    let second_id = same_txn_other_device.pdu.event_id.clone();
    r.append(store, same_txn_other_device).await;
    let other_user = send(&mut r, bob, "DEV1", "t1");
    let third_id = other_user.pdu.event_id.clone();
    r.append(store, other_user).await;

    let (alice_id, bob_id) = (user(alice), user(bob));
    assert_eq!(
        store.event_for_txn(&alice_id, "DEV1", "t1").await.unwrap(),
        Some(first_id.clone())
    );
    assert_eq!(
        store.event_for_txn(&alice_id, "DEV2", "t1").await.unwrap(),
        Some(second_id)
    );
    assert_eq!(
        store.event_for_txn(&bob_id, "DEV1", "t1").await.unwrap(),
        Some(third_id)
    );
    assert_eq!(
        store.event_for_txn(&alice_id, "DEV1", "t2").await.unwrap(),
        None
    );
    assert_eq!(
        store.event_for_txn(&alice_id, "DEV3", "t1").await.unwrap(),
        None
    );
    assert_eq!(
        store
            .event_for_txn(&user("@carol:localhost"), "DEV1", "t1")
            .await
            .unwrap(),
        None
    );
    let record = store.get_event(&first_id).await.unwrap().unwrap();
    assert_eq!(record.txn, Some((device("DEV1"), "t1".to_owned())));
}

pub async fn events_near_a_timestamp(store: &dyn Storage) {
    let mut room = TestRoom::create(store, "!time:localhost", "@alice:localhost", "t").await;
    let (first, _) = room.message(store, "@alice:localhost", "one").await;
    let first_ts = store
        .get_event(&first)
        .await
        .unwrap()
        .unwrap()
        .pdu
        .origin_server_ts;
    let first_ts = u64::from(first_ts.get());
    let (second, _) = room.message(store, "@alice:localhost", "two").await;
    let room_id = room.room_id.clone();
    let near = |ts: u64, dir: Direction| {
        let room_id = room_id.clone();
        async move { store.event_near_timestamp(&room_id, ts, dir).await.unwrap() }
    };

    assert_eq!(
        near(first_ts, Direction::Forward).await,
        Some((first.clone(), first_ts))
    );
    assert_eq!(
        near(first_ts, Direction::Backward).await,
        Some((first.clone(), first_ts))
    );
    assert_eq!(
        near(first_ts + 1, Direction::Forward)
            .await
            .map(|(id, _)| id),
        Some(second.clone()),
        "the first event at or after the time"
    );
    assert_eq!(
        near(first_ts + 1000, Direction::Backward)
            .await
            .map(|(id, _)| id),
        Some(second),
        "the last event at or before the time"
    );
    assert_eq!(near(first_ts + 1000, Direction::Forward).await, None);
    assert_eq!(near(0, Direction::Backward).await, None);
    assert_eq!(
        store
            .event_near_timestamp(
                &self::room("!other:localhost"),
                first_ts,
                Direction::Forward
            )
            .await
            .unwrap(),
        None,
        "only the room's own events"
    );
}

/// `latest_of_types`: per span, in the order given, the newest event of the types among the
/// span's `walk` newest events, never a backfilled one.
pub async fn latest_of_types_walks_each_room(store: &dyn Storage) {
    let alice = "@alice:localhost";
    let mut a = TestRoom::create(store, "!lta:localhost", alice, "lta").await;
    let (_, m1) = a.message(store, alice, "one").await;
    let (_, m2) = a.message(store, alice, "two").await;
    a.state_event(store, "m.room.topic", "", json!({"topic": "t"}))
        .await;
    a.state_event(store, "m.room.name", "", json!({"name": "n"}))
        .await;
    let b = TestRoom::create(store, "!ltb:localhost", alice, "ltb").await;
    let c = TestRoom::create(store, "!ltc:localhost", alice, "ltc").await;
    let old = pdu(
        "$ltcold",
        c.room_id.as_str(),
        alice,
        "m.room.message",
        None,
        json!({"body": "old"}),
        1,
        &[],
    );
    store
        .persist_backfilled(vec![BackfilledEvent {
            pdu: old,
            state_snapshot: c.snapshot,
        }])
        .await
        .unwrap();
    let now = store.current_stream_pos().await.unwrap();
    let span = |r: &TestRoom, from: StreamPos, floor: Option<StreamPos>| TimelineSpan {
        room_id: r.room_id.clone(),
        from,
        floor,
    };
    let messages = ["m.room.message", "m.sticker"];
    let found = store
        .latest_of_types(
            &[
                span(&a, now, None),
                span(&b, now, None),
                span(&a, m1.stream_pos, None),
                span(&a, now, Some(m2.stream_pos)),
                span(&c, now, None),
                TimelineSpan {
                    room_id: room("!nowhere:localhost"),
                    from: now,
                    floor: None,
                },
            ],
            &messages,
            100,
        )
        .await
        .unwrap();
    assert_eq!(
        found,
        [
            Some(m2.stream_pos),
            None,
            Some(m1.stream_pos),
            None,
            None,
            None
        ],
        "newest message per span; none after the floor, in rooms without, or backfilled"
    );
    let walked = store
        .latest_of_types(&[span(&a, now, None)], &messages, 2)
        .await
        .unwrap();
    assert_eq!(walked, [None], "the two newest events are state changes");
    let walked = store
        .latest_of_types(&[span(&a, now, None)], &messages, 3)
        .await
        .unwrap();
    assert_eq!(walked, [Some(m2.stream_pos)]);
    let created = store
        .latest_of_types(&[span(&b, now, None)], &["m.room.create"], 100)
        .await
        .unwrap();
    assert!(created[0].is_some_and(|p| p > StreamPos::ZERO));
    assert!(store
        .latest_of_types(&[], &messages, 100)
        .await
        .unwrap()
        .is_empty());
}

/// `latest_events_of`: per span, in the order given, its newest events (newest first) between
/// its floor and `from`, as `room_events` walking backward gives them.
pub async fn latest_events_of_many_rooms(store: &dyn Storage) {
    let alice = "@alice:localhost";
    let mut a = TestRoom::create(store, "!lea:localhost", alice, "lea").await;
    let b = TestRoom::create(store, "!leb:localhost", alice, "leb").await;
    let mut msgs = Vec::new();
    for i in 0..5 {
        msgs.push(a.message(store, alice, &format!("a{i}")).await);
    }
    let now = store.current_stream_pos().await.unwrap();
    let span = |r: &TestRoom, from: StreamPos, floor: Option<StreamPos>| TimelineSpan {
        room_id: r.room_id.clone(),
        from,
        floor,
    };
    let spans = [
        span(&a, now, None),
        span(&b, now, None),
        span(&a, msgs[2].1.stream_pos, None),
        span(&a, now, Some(msgs[3].1.stream_pos)),
        span(&a, now, Some(now)),
        TimelineSpan {
            room_id: room("!nowhere:localhost"),
            from: now,
            floor: None,
        },
    ];
    let found = store.latest_events_of(&spans, 3).await.unwrap();
    assert_eq!(found.len(), spans.len(), "one answer per span");
    for (span, events) in spans.iter().zip(&found) {
        let one = store
            .room_events(&span.room_id, span.from, span.floor, Direction::Backward, 3)
            .await
            .unwrap();
        assert_eq!(ids(events), ids(&one), "as room_events gives {span:?}");
    }
    let id = |i: usize| msgs[i].0.clone();
    assert_eq!(ids(&found[0]), [id(4), id(3), id(2)], "newest first");
    assert_eq!(found[1].len(), 2, "create and join of the other room");
    assert!(found[1].iter().all(|e| e.pdu.room_id == b.room_id));
    assert_eq!(ids(&found[2]), [id(2), id(1), id(0)], "from `from` down");
    assert_eq!(ids(&found[3]), [id(4)], "above the floor only");
    assert!(found[4].is_empty() && found[5].is_empty());
    let none = store.latest_events_of(&spans, 0).await.unwrap();
    assert!(none.len() == spans.len() && none.iter().all(Vec::is_empty));
    assert!(store.latest_events_of(&[], 3).await.unwrap().is_empty());
}
