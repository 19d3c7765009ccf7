//! Conformance tests of [`FederationStore`](crate::FederationStore) and events from other
//! servers: outliers, backfill, the outbox, received transactions and outside memberships.

use super::*;

fn outlier(pdu: &Pdu, status: OutlierStatus) -> NewOutlier {
    NewOutlier {
        pdu: pdu.clone(),
        status,
    }
}

/// Outliers are returned by ID with their status but take no stream position and never show in
/// a timeline; one already stored is skipped; a timeline event with an outlier's ID replaces it.
pub async fn outliers_stay_out_of_the_timeline(store: &dyn Storage) {
    let alice = "@alice:localhost";
    let remote = "@bob:remote.example";
    let room_id = "!out:localhost";
    let mut r = TestRoom::create(store, room_id, alice, "tl").await;
    let start = store.current_stream_pos().await.unwrap();

    let auth = pdu(
        "$outauth",
        room_id,
        remote,
        "m.room.member",
        Some(remote),
        json!({"membership": "join"}),
        2,
        &[],
    );
    let bad = pdu(
        "$outbad",
        room_id,
        remote,
        "m.room.power_levels",
        Some(""),
        json!({"users": {remote: 100}}),
        3,
        &[],
    );
    let soft = pdu(
        "$outsoft",
        room_id,
        remote,
        "m.room.message",
        None,
        json!({"body": "soft"}),
        4,
        &[],
    );
    let persisted = store
        .persist_with_outliers(
            vec![
                outlier(&auth, OutlierStatus::Outlier),
                outlier(&bad, OutlierStatus::Rejected),
                outlier(&soft, OutlierStatus::SoftFailed),
                // The same event twice in one call: the first is stored, the second skipped.
                outlier(&soft, OutlierStatus::Rejected),
            ],
            Vec::new(),
        )
        .await
        .unwrap();
    assert!(persisted.is_empty());
    assert_eq!(
        store.current_stream_pos().await.unwrap(),
        start,
        "outliers take no stream position"
    );

    for (stored, status) in [
        (&auth, OutlierStatus::Outlier),
        (&bad, OutlierStatus::Rejected),
        (&soft, OutlierStatus::SoftFailed),
    ] {
        let id = &stored.event_id;
        let record = store
            .get_event(id)
            .await
            .unwrap()
            .expect("outliers are found by ID");
        assert_eq!(record.outlier, Some(status), "{id}");
        assert_eq!(record.stream_pos, StreamPos::ZERO, "{id}");
        assert_eq!(record.state_snapshot, 0, "{id}");
        assert_eq!(record.txn, None, "{id}");
        assert_eq!(record.redacted_by, None, "{id}");
        assert_eq!(
            record.pdu.rejected,
            status == OutlierStatus::Rejected,
            "{id}"
        );
        assert_eq!(record.pdu.room_id, r.room_id);
        assert_eq!(
            serde_json::from_str::<Value>(record.pdu.json.get()).unwrap(),
            serde_json::from_str::<Value>(stored.json.get()).unwrap(),
            "JSON kept"
        );
    }
    let found: BTreeMap<_, _> = store
        .get_events(&[
            auth.event_id.clone(),
            bad.event_id.clone(),
            r.last.clone(),
            event("$outunknown"),
        ])
        .await
        .unwrap()
        .into_iter()
        .map(|e| (e.pdu.event_id, e.outlier))
        .collect();
    assert_eq!(
        found,
        BTreeMap::from([
            (auth.event_id.clone(), Some(OutlierStatus::Outlier)),
            (bad.event_id.clone(), Some(OutlierStatus::Rejected)),
            (r.last.clone(), None),
        ])
    );

    let now = store.current_stream_pos().await.unwrap();
    let timeline: BTreeSet<_> = ids(&store
        .room_events(&r.room_id, now, None, Direction::Backward, 100)
        .await
        .unwrap())
    .into_iter()
    .collect();
    for outlier in [&auth, &bad, &soft] {
        assert!(
            !timeline.contains(&outlier.event_id),
            "outliers are not in the timeline"
        );
    }
    assert_eq!(
        store.rooms_with_events_between(start, now).await.unwrap(),
        Vec::<OwnedRoomId>::new()
    );

    // Stored already, in either place: skipped.
    let last = store.get_event(&r.last).await.unwrap().unwrap();
    store
        .persist_with_outliers(
            vec![
                outlier(&auth, OutlierStatus::Rejected),
                outlier(&last.pdu, OutlierStatus::Outlier),
            ],
            Vec::new(),
        )
        .await
        .unwrap();
    assert_eq!(
        store
            .get_event(&auth.event_id)
            .await
            .unwrap()
            .unwrap()
            .outlier,
        Some(OutlierStatus::Outlier),
        "the first status stays"
    );
    let still = store.get_event(&r.last).await.unwrap().unwrap();
    assert_eq!(
        still.outlier, None,
        "a timeline event stays in the timeline"
    );
    assert_eq!(still.stream_pos, last.stream_pos);

    // An outlier that is later persisted as a timeline event becomes one.
    let late = r.next_pdu(alice, "m.room.message", None, json!({"body": "late"}));
    let late_id = late.event_id.clone();
    store
        .persist_with_outliers(vec![outlier(&late, OutlierStatus::Outlier)], Vec::new())
        .await
        .unwrap();
    let before = store.current_stream_pos().await.unwrap();
    let placed = r.append(store, r.new_event(late)).await;
    let record = store.get_event(&late_id).await.unwrap().unwrap();
    assert_eq!(record.outlier, None);
    assert_eq!(record.stream_pos, placed.stream_pos);
    assert_eq!(record.state_snapshot, placed.state_snapshot);
    assert_eq!(
        store
            .get_events(std::slice::from_ref(&late_id))
            .await
            .unwrap()
            .len(),
        1,
        "found once"
    );
    assert_eq!(
        ids(&store
            .room_events(
                &r.room_id,
                placed.stream_pos,
                Some(before),
                Direction::Backward,
                10
            )
            .await
            .unwrap()),
        std::slice::from_ref(&late_id)
    );
    assert_eq!(
        store
            .rooms_with_events_between(before, placed.stream_pos)
            .await
            .unwrap(),
        std::slice::from_ref(&r.room_id)
    );

    // Outliers and timeline events in one call (a join over federation); an event of the batch
    // that is also among the outliers ends in the timeline.
    let state = pdu(
        "$outstate",
        room_id,
        remote,
        "m.room.topic",
        Some(""),
        json!({"topic": "remote"}),
        2,
        &[],
    );
    let join = r.next_pdu(alice, "m.room.message", None, json!({"body": "joined"}));
    let join_id = join.event_id.clone();
    let persisted = store
        .persist_with_outliers(
            vec![
                outlier(&state, OutlierStatus::Outlier),
                outlier(&join, OutlierStatus::Outlier),
            ],
            vec![r.new_event(join)],
        )
        .await
        .unwrap();
    assert_eq!(persisted.len(), 1);
    assert_eq!(
        store.current_stream_pos().await.unwrap(),
        persisted[0].stream_pos
    );
    assert_eq!(
        store
            .get_event(&state.event_id)
            .await
            .unwrap()
            .unwrap()
            .outlier,
        Some(OutlierStatus::Outlier)
    );
    let join = store.get_event(&join_id).await.unwrap().unwrap();
    assert_eq!(join.outlier, None);
    assert_eq!(join.stream_pos, persisted[0].stream_pos);
}

/// History fetched from another server goes below every stored position (newest given first,
/// so the oldest sorts first), is paged backward after everything else, moves neither the
/// stream counter nor current state, extremities or memberships; an event already in the
/// timeline is skipped and an outlier moves into the timeline.
pub async fn backfilled_events_go_before_the_timeline(store: &dyn Storage) {
    let alice = "@alice:localhost";
    let remote = "@bob:remote.example";
    let room_id = "!bf:localhost";
    let mut r = TestRoom::create(store, room_id, alice, "bf").await;
    r.message(store, alice, "newest").await;
    let start = store.current_stream_pos().await.unwrap();
    let timeline_before = ids(&store
        .room_events(&r.room_id, start, None, Direction::Backward, 100)
        .await
        .unwrap());
    let state_before = store.current_state(&r.room_id).await.unwrap();
    let extremities_before = store.forward_extremities(&r.room_id).await.unwrap();
    let members_before = store.room_members(&r.room_id).await.unwrap();

    let old = |id: &str, depth: u64, kind: &str, state_key: Option<&str>| {
        let content = match kind {
            "m.room.member" => json!({"membership": "join"}),
            _ => json!({"body": id}),
        };
        pdu(id, room_id, remote, kind, state_key, content, depth, &[])
    };
    let h1 = old("$bfh1", 1, "m.room.member", Some(remote));
    let h2 = old("$bfh2", 2, "m.room.message", None);
    let h3 = old("$bfh3", 3, "m.room.message", None);
    // Known already as an outlier (e.g. an auth event from a join): it moves into the timeline.
    store
        .persist_with_outliers(vec![outlier(&h2, OutlierStatus::Outlier)], Vec::new())
        .await
        .unwrap();
    let backfilled = |pdu: &Pdu| BackfilledEvent {
        pdu: pdu.clone(),
        state_snapshot: r.snapshot,
    };

    let positions = store
        .persist_backfilled(vec![backfilled(&h3), backfilled(&h2), backfilled(&h1)])
        .await
        .unwrap();
    assert_eq!(
        positions,
        [StreamPos(-1), StreamPos(-2), StreamPos(-3)],
        "negative, going down in the order given"
    );
    assert_eq!(
        store.current_stream_pos().await.unwrap(),
        start,
        "the stream counter does not move"
    );
    assert_eq!(store.current_state(&r.room_id).await.unwrap(), state_before);
    assert_eq!(
        store.forward_extremities(&r.room_id).await.unwrap(),
        extremities_before
    );
    assert_eq!(
        store.room_members(&r.room_id).await.unwrap(),
        members_before
    );
    assert_eq!(
        store.rooms_with_events_between(start, start).await.unwrap(),
        Vec::<OwnedRoomId>::new(),
        "an incremental sync sees nothing new"
    );

    let record = store.get_event(&h2.event_id).await.unwrap().unwrap();
    assert_eq!(record.outlier, None, "the outlier is now in the timeline");
    assert_eq!(record.stream_pos, StreamPos(-2));
    assert_eq!(record.state_snapshot, r.snapshot);
    assert_eq!(
        store
            .get_events(std::slice::from_ref(&h2.event_id))
            .await
            .unwrap()
            .len(),
        1,
        "found once"
    );

    // Backward pagination runs on from the oldest existing event into the backfilled ones.
    let all = store
        .room_events(&r.room_id, start, None, Direction::Backward, 100)
        .await
        .unwrap();
    let mut expected = timeline_before.clone();
    expected.extend([
        h3.event_id.clone(),
        h2.event_id.clone(),
        h1.event_id.clone(),
    ]);
    assert_eq!(ids(&all), expected);
    let oldest_before = all[timeline_before.len() - 1].stream_pos;
    let page = store
        .room_events(
            &r.room_id,
            StreamPos(oldest_before.0 - 1),
            None,
            Direction::Backward,
            2,
        )
        .await
        .unwrap();
    assert_eq!(ids(&page), [h3.event_id.clone(), h2.event_id.clone()]);
    let page = store
        .room_events(
            &r.room_id,
            StreamPos(page[1].stream_pos.0 - 1),
            None,
            Direction::Backward,
            2,
        )
        .await
        .unwrap();
    assert_eq!(ids(&page), std::slice::from_ref(&h1.event_id));
    let page = store
        .room_events(&r.room_id, StreamPos(i64::MIN), None, Direction::Forward, 2)
        .await
        .unwrap();
    assert_eq!(
        ids(&page),
        [h1.event_id.clone(), h2.event_id.clone()],
        "forward from the very start: oldest first"
    );

    // Backfilling the same events again is a no-op; a new one goes below the lowest.
    let again = store
        .persist_backfilled(vec![backfilled(&h3), backfilled(&h1)])
        .await
        .unwrap();
    assert_eq!(again, [StreamPos(-1), StreamPos(-3)], "positions kept");
    let h0 = old("$bfh0", 1, "m.room.message", None);
    assert_eq!(
        store
            .persist_backfilled(vec![backfilled(&h0), backfilled(&h0)])
            .await
            .unwrap(),
        [StreamPos(-4), StreamPos(-4)],
        "twice in one call: stored once"
    );
    expected.push(h0.event_id.clone());
    assert_eq!(
        ids(&store
            .room_events(&r.room_id, start, None, Direction::Backward, 100)
            .await
            .unwrap()),
        expected
    );
    assert_eq!(store.current_stream_pos().await.unwrap(), start);

    // New events still take the next position of the counter.
    let (_, persisted) = r.message(store, alice, "after").await;
    assert_eq!(persisted.stream_pos, StreamPos(start.0 + 1));
    assert_eq!(
        store
            .rooms_with_events_between(start, persisted.stream_pos)
            .await
            .unwrap(),
        std::slice::from_ref(&r.room_id)
    );
}

fn edu(n: u32) -> String {
    json!({"edu_type": "m.typing", "content": {"n": n}}).to_string()
}

fn contents(entries: &[OutboxEntry]) -> Vec<OutboxContent> {
    entries.iter().map(|e| e.content.clone()).collect()
}

async fn destinations(store: &dyn Storage) -> Vec<ruma::OwnedServerName> {
    let mut destinations = store.outbox_destinations().await.unwrap();
    destinations.sort();
    destinations
}

/// The outbox: rows written with their event, EDUs, peeking in order within limits, removal and
/// dropping per destination.
pub async fn federation_outbox(store: &dyn Storage) {
    use OutboxContent::{Edu, Pdu};
    let alice = "@alice:localhost";
    let server = |name: &str| ruma::OwnedServerName::try_from(name).unwrap();
    let (a, b, c) = (
        server("a.example"),
        server("b.example"),
        server("c.example"),
    );
    let (a, b, c) = (&*a, &*b, &*c);
    let mut r = TestRoom::create(store, "!fo:localhost", alice, "fo").await;
    assert!(store.outbox_destinations().await.unwrap().is_empty());
    assert!(store.outbox_peek(a, 10, 10).await.unwrap().is_empty());

    let first = r.next_pdu(alice, "m.room.message", None, json!({"body": "1"}));
    let first_id = first.event_id.clone();
    let mut new_event = r.new_event(first);
    new_event.destinations = vec![a.to_owned(), b.to_owned()];
    r.append(store, new_event).await;
    store.queue_edu(&[a.to_owned()], edu(1)).await.unwrap();
    let second = r.next_pdu(alice, "m.room.message", None, json!({"body": "2"}));
    let second_id = second.event_id.clone();
    let mut new_event = r.new_event(second);
    new_event.destinations = vec![a.to_owned()];
    r.append(store, new_event).await;
    store
        .queue_edu(&[a.to_owned(), c.to_owned()], edu(2))
        .await
        .unwrap();
    store.queue_edu(&[], edu(3)).await.unwrap();
    assert_eq!(destinations(store).await, [a, b, c]);

    let all = store.outbox_peek(a, 10, 10).await.unwrap();
    assert_eq!(
        contents(&all),
        [
            Pdu(first_id.clone()),
            Edu(edu(1)),
            Pdu(second_id.clone()),
            Edu(edu(2))
        ]
    );
    assert!(all.windows(2).all(|w| w[0].id < w[1].id), "IDs increase");
    assert!(all
        .iter()
        .all(|e| e.destination == a.as_str() && e.created_ms > 0));
    assert_eq!(
        contents(&store.outbox_peek(b, 10, 10).await.unwrap()),
        [Pdu(first_id.clone())]
    );
    assert_eq!(
        contents(&store.outbox_peek(c, 10, 10).await.unwrap()),
        [Edu(edu(2))]
    );

    // Limits stop at the first row over either of them: rows are never skipped.
    for (max_pdus, max_edus, expected) in [
        (1, 10, 2),
        (10, 0, 1),
        (0, 10, 0),
        (2, 1, 3),
        (1, 1, 2),
        (2, 2, 4),
    ] {
        assert_eq!(
            store.outbox_peek(a, max_pdus, max_edus).await.unwrap(),
            all[..expected],
            "peek with at most {max_pdus} PDUs and {max_edus} EDUs"
        );
    }

    // Removal is per destination.
    store.outbox_remove(b, &[all[2].id]).await.unwrap();
    store.outbox_remove(a, &[]).await.unwrap();
    assert_eq!(store.outbox_peek(a, 10, 10).await.unwrap(), all);
    store
        .outbox_remove(a, &[all[0].id, all[1].id])
        .await
        .unwrap();
    assert_eq!(store.outbox_peek(a, 10, 10).await.unwrap(), all[2..]);

    assert_eq!(store.outbox_drop(b).await.unwrap(), 1);
    assert_eq!(
        store
            .outbox_drop(ruma::server_name!("nowhere.example"))
            .await
            .unwrap(),
        0
    );
    assert_eq!(destinations(store).await, [a, c]);
    assert!(store.outbox_peek(b, 10, 10).await.unwrap().is_empty());

    // New rows come after the remaining ones.
    store.queue_edu(&[a.to_owned()], edu(4)).await.unwrap();
    let now = store.outbox_peek(a, 10, 10).await.unwrap();
    assert_eq!(contents(&now), [Pdu(second_id), Edu(edu(2)), Edu(edu(4))]);
    assert!(now[2].id > all[3].id);

    // The rows are written in the event's transaction: a failed batch queues nothing.
    let mut queued = loose_message("$fook", &r.room_id, r.snapshot, 20);
    queued.destinations = vec![ruma::server_name!("d.example").to_owned()];
    let broken = NewEvent {
        state: NewState::Changed {
            base: Some(SnapshotId::MAX),
            changes: vec![(key("m.room.topic", ""), event("$fobroken"))],
        },
        ..loose_message("$fobroken", &r.room_id, r.snapshot, 21)
    };
    assert!(store.persist_events(vec![queued, broken]).await.is_err());
    assert!(store
        .outbox_peek(ruma::server_name!("d.example"), 10, 10)
        .await
        .unwrap()
        .is_empty());
    assert_eq!(destinations(store).await, [a, c]);
}

/// A transaction's response is recorded once: a retry is answered with the first response.
pub async fn received_transactions(store: &dyn Storage) {
    let origin = "remote.example";
    assert_eq!(store.received_txn(origin, "t1").await.unwrap(), None);
    let first = json!({"pdus": {"$a": {}}}).to_string();
    store
        .record_received_txn(origin, "t1", first.clone(), 1_000)
        .await
        .unwrap();
    assert_eq!(
        store.received_txn(origin, "t1").await.unwrap(),
        Some(first.clone())
    );
    store
        .record_received_txn(origin, "t1", json!({"pdus": {}}).to_string(), 2_000)
        .await
        .expect("recording again is no error");
    assert_eq!(
        store.received_txn(origin, "t1").await.unwrap(),
        Some(first),
        "the first response wins"
    );
    assert_eq!(
        store.received_txn("other.example", "t1").await.unwrap(),
        None,
        "transaction IDs are per origin"
    );
    assert_eq!(store.received_txn(origin, "t2").await.unwrap(), None);
}

/// A local user's membership in a room this server is not in: the event is kept as an outlier,
/// the membership moves at a new stream position, and the invite's stripped state is kept.
pub async fn outside_memberships(store: &dyn Storage) {
    let alice = "@alice:localhost";
    let inviter = "@bob:remote.example";
    let remote_room = room("!remote:remote.example");
    let invite = pdu(
        "$osinvite",
        remote_room.as_str(),
        inviter,
        "m.room.member",
        Some(alice),
        json!({"membership": "invite"}),
        5,
        &[],
    );
    let stripped = json!([{
        "type": "m.room.name",
        "state_key": "",
        "sender": inviter,
        "content": {"name": "Remote"}
    }])
    .to_string();
    let start = store.current_stream_pos().await.unwrap();
    let pos = store
        .persist_outside_membership(
            invite.clone(),
            &user(alice),
            "invite",
            Some(stripped.clone()),
        )
        .await
        .unwrap();
    assert!(pos > start);
    assert_eq!(
        store.current_stream_pos().await.unwrap(),
        pos,
        "the new position is visible"
    );
    let membership = |event_id: &str, membership: &str, stream_pos| MembershipRecord {
        room_id: remote_room.clone(),
        user_id: user(alice),
        membership: membership.to_owned(),
        event_id: event(event_id),
        stream_pos,
        forgotten: false,
        joined_pos: None,
    };
    assert_eq!(
        store.memberships_of_user(&user(alice)).await.unwrap(),
        [membership("$osinvite", "invite", pos)]
    );
    assert_eq!(
        store
            .stripped_state(&remote_room, &user(alice))
            .await
            .unwrap(),
        Some(stripped.clone())
    );
    assert_eq!(
        store
            .stripped_state(&remote_room, &user("@carol:localhost"))
            .await
            .unwrap(),
        None
    );
    let record = store.get_event(&invite.event_id).await.unwrap().unwrap();
    assert_eq!(record.outlier, Some(OutlierStatus::Outlier));
    assert_eq!(record.stream_pos, StreamPos::ZERO);
    assert_eq!(store.room_info(&remote_room).await.unwrap(), None);
    assert_eq!(
        store.rooms_with_events_between(start, pos).await.unwrap(),
        Vec::<OwnedRoomId>::new(),
        "no timeline event"
    );

    // The rejection, after the room was forgotten: a new position, the stripped state kept.
    store.forget_room(&user(alice), &remote_room).await.unwrap();
    let leave = pdu(
        "$osleave",
        remote_room.as_str(),
        alice,
        "m.room.member",
        Some(alice),
        json!({"membership": "leave"}),
        6,
        std::slice::from_ref(&invite.event_id),
    );
    let pos2 = store
        .persist_outside_membership(leave, &user(alice), "leave", None)
        .await
        .unwrap();
    assert!(pos2 > pos);
    assert_eq!(store.current_stream_pos().await.unwrap(), pos2);
    assert_eq!(
        store.memberships_of_user(&user(alice)).await.unwrap(),
        [membership("$osleave", "leave", pos2)]
    );
    assert_eq!(
        store
            .stripped_state(&remote_room, &user(alice))
            .await
            .unwrap(),
        Some(stripped),
        "None keeps the stored stripped state"
    );
    assert_eq!(
        store
            .get_event(&event("$osleave"))
            .await
            .unwrap()
            .unwrap()
            .outlier,
        Some(OutlierStatus::Outlier)
    );

    // An event stored already is no error; new stripped state replaces the old.
    let pos3 = store
        .persist_outside_membership(invite, &user(alice), "invite", Some("[]".to_owned()))
        .await
        .unwrap();
    assert!(pos3 > pos2);
    assert_eq!(
        store.memberships_of_user(&user(alice)).await.unwrap(),
        [membership("$osinvite", "invite", pos3)]
    );
    assert_eq!(
        store
            .stripped_state(&remote_room, &user(alice))
            .await
            .unwrap(),
        Some("[]".to_owned())
    );

    // The positions are those of the global counter: the next write follows without a gap.
    let next = store
        .set_account_data(&user(alice), None, "m.x", &json!({}))
        .await
        .unwrap();
    assert_eq!(next, pos3.next());
}
