//! Conformance tests of [`RelationStore`](crate::RelationStore): the relations index written with
//! each event, pages of relating events, thread summaries and lists, edits, references, and what
//! redaction, rejection and backfill do to the index.

use super::*;
use crate::{RelationsQuery, ThreadEntry, REFERENCE, REPLACE, THREAD};

const ALICE: &str = "@alice:localhost";
const BOB: &str = "@bob:localhost";

/// Appends an event of `kind` by `sender` relating to `parent` with `rel_type`.
async fn relate(
    r: &mut TestRoom,
    store: &dyn Storage,
    sender: &str,
    kind: &str,
    rel_type: &str,
    parent: &OwnedEventId,
) -> (OwnedEventId, StreamPos) {
    let mut content = json!({ "m.relates_to": { "rel_type": rel_type, "event_id": parent } });
    if rel_type == REPLACE {
        content["m.new_content"] = json!({ "body": "edited" });
    }
    if rel_type == "m.annotation" {
        content["m.relates_to"]["key"] = json!("👍");
    }
    let pdu = r.next_pdu(sender, kind, None, content);
    let id = pdu.event_id.clone();
    let persisted = r.append(store, r.new_event(pdu)).await;
    (id, persisted.stream_pos)
}

fn page(r: &TestRoom, parent: &OwnedEventId, dir: Direction, from: StreamPos) -> RelationsQuery {
    RelationsQuery {
        room_id: r.room_id.clone(),
        parent: parent.clone(),
        rel_type: None,
        event_type: None,
        from,
        to: None,
        dir,
        limit: 50,
        depth: 1,
    }
}

pub async fn relations_are_indexed_and_paged(store: &dyn Storage) {
    let mut r = TestRoom::create(store, "!rel:localhost", ALICE, "rl").await;
    r.member(store, BOB, BOB, "join").await;
    let (root, _) = r.message(store, ALICE, "root").await;
    let (reply1, _) = relate(&mut r, store, BOB, "m.room.message", THREAD, &root).await;
    let (reply2, _) = relate(&mut r, store, ALICE, "m.room.message", THREAD, &root).await;
    let (reaction, _) = relate(&mut r, store, BOB, "m.reaction", "m.annotation", &root).await;
    let (nested, _) = relate(&mut r, store, ALICE, "m.reaction", "m.annotation", &reply1).await;
    r.message(store, ALICE, "unrelated").await;
    let top = StreamPos(i64::MAX);
    let bottom = StreamPos(i64::MIN);

    let relation = store.relation_of(&reply1).await.unwrap().expect("indexed");
    assert_eq!(
        (relation.event_id, relation.rel_type.as_str()),
        (root.clone(), THREAD)
    );
    assert_eq!(store.relation_of(&root).await.unwrap(), None);

    let all = store
        .relations(&page(&r, &root, Direction::Backward, top))
        .await
        .unwrap();
    assert_eq!(
        ids(&all),
        [reaction.clone(), reply2.clone(), reply1.clone()],
        "newest first"
    );
    let forward = store
        .relations(&page(&r, &root, Direction::Forward, bottom))
        .await
        .unwrap();
    assert_eq!(
        ids(&forward),
        [reply1.clone(), reply2.clone(), reaction.clone()]
    );

    let mut threads_only = page(&r, &root, Direction::Backward, top);
    threads_only.rel_type = Some(THREAD.into());
    let found = store.relations(&threads_only).await.unwrap();
    assert_eq!(ids(&found), [reply2.clone(), reply1.clone()]);
    threads_only.event_type = Some("m.reaction".into());
    assert!(store.relations(&threads_only).await.unwrap().is_empty());
    let mut reactions = page(&r, &root, Direction::Backward, top);
    reactions.event_type = Some("m.reaction".into());
    assert_eq!(
        ids(&store.relations(&reactions).await.unwrap()),
        std::slice::from_ref(&reaction)
    );

    // Pages of one, both ways, with `from` and `to` as `room_events` reads them.
    let mut one = page(&r, &root, Direction::Backward, top);
    one.limit = 1;
    let first = store.relations(&one).await.unwrap();
    assert_eq!(ids(&first), std::slice::from_ref(&reaction));
    one.from = StreamPos(first[0].stream_pos.0 - 1);
    let second = store.relations(&one).await.unwrap();
    assert_eq!(ids(&second), std::slice::from_ref(&reply2));
    one.to = Some(second[0].stream_pos);
    assert!(
        store.relations(&one).await.unwrap().is_empty(),
        "`to` is exclusive backward"
    );
    let mut ahead = page(&r, &root, Direction::Forward, second[0].stream_pos);
    ahead.to = Some(first[0].stream_pos);
    assert_eq!(
        ids(&store.relations(&ahead).await.unwrap()),
        std::slice::from_ref(&reaction)
    );

    // Recursion reaches the reaction to a reply; depth 1 does not.
    let mut deep = page(&r, &root, Direction::Backward, top);
    deep.depth = 2;
    let found = store.relations(&deep).await.unwrap();
    assert_eq!(ids(&found), [nested, reaction, reply2, reply1]);
    // Another room's parent of the same ID shares nothing.
    let other = TestRoom::create(store, "!relother:localhost", ALICE, "ro").await;
    let elsewhere = store
        .relations(&page(&other, &root, Direction::Backward, top))
        .await;
    assert!(elsewhere.unwrap().is_empty());
}

pub async fn thread_summaries_edits_and_references(store: &dyn Storage) {
    let mut r = TestRoom::create(store, "!sum:localhost", ALICE, "sm").await;
    r.member(store, BOB, BOB, "join").await;
    let (root, _) = r.message(store, ALICE, "root").await;
    let (quiet, _) = r.message(store, BOB, "no thread").await;
    let (_, first_pos) = relate(&mut r, store, ALICE, "m.room.message", THREAD, &root).await;
    let (latest, _) = relate(&mut r, store, ALICE, "m.room.message", THREAD, &root).await;
    let (edit1, _) = relate(&mut r, store, ALICE, "m.room.message", REPLACE, &root).await;
    let (edit2, _) = relate(&mut r, store, ALICE, "m.room.message", REPLACE, &root).await;
    // Not edits of `root`: another sender, another type.
    relate(&mut r, store, BOB, "m.room.message", REPLACE, &root).await;
    relate(&mut r, store, ALICE, "m.sticker", REPLACE, &root).await;
    let (ref1, _) = relate(&mut r, store, BOB, "m.room.message", REFERENCE, &quiet).await;
    let (ref2, ref2_pos) = relate(&mut r, store, ALICE, "m.key", REFERENCE, &quiet).await;
    let roots = [root.clone(), quiet.clone()];

    let summaries = store
        .thread_summaries(&r.room_id, &roots, &user(BOB), None)
        .await
        .unwrap();
    assert_eq!(
        summaries,
        [crate::ThreadSummary {
            root: root.clone(),
            count: 2,
            latest: latest.clone(),
            participated: false
        }]
    );
    let mine = store
        .thread_summaries(&r.room_id, &roots, &user(ALICE), None)
        .await
        .unwrap();
    assert!(mine[0].participated);
    let early = store
        .thread_summaries(&r.room_id, &roots, &user(ALICE), Some(first_pos))
        .await
        .unwrap();
    assert_eq!(
        (early[0].count, early[0].latest != latest),
        (1, true),
        "only up to `up_to`"
    );

    let edits = store.edits(&r.room_id, &roots, None, 5).await.unwrap();
    let edit_ids: Vec<_> = edits
        .iter()
        .map(|(p, e)| (p.clone(), e.pdu.event_id.clone()))
        .collect();
    assert_eq!(
        edit_ids,
        [(root.clone(), edit2.clone()), (root.clone(), edit1)],
        "newest first"
    );
    let newest = store.edits(&r.room_id, &roots, None, 1).await.unwrap();
    assert_eq!(newest.len(), 1);
    assert_eq!(newest[0].1.pdu.event_id, edit2);

    let refs = store
        .references(&r.room_id, &roots, None, 10)
        .await
        .unwrap();
    assert_eq!(refs, [(quiet.clone(), ref1.clone()), (quiet.clone(), ref2)]);
    let capped = store
        .references(&r.room_id, &roots, Some(ref2_pos), 1)
        .await
        .unwrap();
    assert_eq!(capped, [(quiet.clone(), ref1)]);

    let by_bob = store
        .parents_related_by(&r.room_id, &roots, Some(&[user(BOB)]), None)
        .await
        .unwrap();
    let mut by_bob: Vec<_> = by_bob.into_iter().collect();
    by_bob.sort();
    let mut expected = vec![root.clone(), quiet.clone()];
    expected.sort();
    assert_eq!(by_bob, expected);
    let threads_by_bob = store
        .parents_related_by(
            &r.room_id,
            &roots,
            Some(&[user(BOB)]),
            Some(&[THREAD.to_owned()]),
        )
        .await
        .unwrap();
    assert!(threads_by_bob.is_empty());
    let any_thread = store
        .parents_related_by(&r.room_id, &roots, None, Some(&[THREAD.to_owned()]))
        .await
        .unwrap();
    assert_eq!(any_thread, [root]);
}

pub async fn threads_are_listed_by_latest_reply(store: &dyn Storage) {
    let mut r = TestRoom::create(store, "!thr:localhost", ALICE, "th").await;
    r.member(store, BOB, BOB, "join").await;
    let (a, _) = r.message(store, ALICE, "thread a").await;
    let (b, _) = r.message(store, BOB, "thread b").await;
    relate(&mut r, store, ALICE, "m.room.message", THREAD, &a).await;
    let (_, b_pos) = relate(&mut r, store, ALICE, "m.room.message", THREAD, &b).await;
    let (_, a_pos) = relate(&mut r, store, ALICE, "m.room.message", THREAD, &a).await;
    // A thread whose root this server does not hold is not listed.
    relate(
        &mut r,
        store,
        BOB,
        "m.room.message",
        THREAD,
        &event("$unknownroot"),
    )
    .await;

    let entry = |root: &OwnedEventId, pos| ThreadEntry {
        root: root.clone(),
        latest_pos: pos,
    };
    let all = store
        .threads(&r.room_id, None, None, None, 10)
        .await
        .unwrap();
    assert_eq!(all, [entry(&a, a_pos), entry(&b, b_pos)]);
    let next = store
        .threads(&r.room_id, None, Some(a_pos), None, 10)
        .await
        .unwrap();
    assert_eq!(next, [entry(&b, b_pos)], "`before` is exclusive");
    assert_eq!(
        store
            .threads(&r.room_id, None, None, None, 1)
            .await
            .unwrap()
            .len(),
        1
    );
    let earlier = store
        .threads(&r.room_id, None, None, Some(b_pos), 10)
        .await
        .unwrap();
    assert_eq!(
        earlier[0],
        entry(&b, b_pos),
        "a's newest reply is after `up_to`"
    );

    // Bob started b and replied to none: only b is his.
    let bobs = store
        .threads(&r.room_id, Some(&user(BOB)), None, None, 10)
        .await
        .unwrap();
    assert_eq!(bobs, [entry(&b, b_pos)]);
    let alices = store
        .threads(&r.room_id, Some(&user(ALICE)), None, None, 10)
        .await
        .unwrap();
    assert_eq!(alices.len(), 2, "she started a and replied to b");
    let carol = store
        .threads(&r.room_id, Some(&user("@carol:localhost")), None, None, 10)
        .await;
    assert!(carol.unwrap().is_empty());
}

pub async fn redaction_rejection_and_backfill_in_the_relations_index(store: &dyn Storage) {
    let mut r = TestRoom::create(store, "!relred:localhost", ALICE, "rr").await;
    let (root, _) = r.message(store, ALICE, "root").await;
    let (reply, _) = relate(&mut r, store, ALICE, "m.room.message", THREAD, &root).await;

    // Redacting the reply takes it out of the index.
    let record = store.get_event(&reply).await.unwrap().unwrap();
    let mut redacted: Value = serde_json::from_str(record.pdu.json.get()).unwrap();
    redacted["content"] = json!({});
    let redaction = r.next_pdu(ALICE, "m.room.redaction", None, json!({ "redacts": reply }));
    let mut new_event = r.new_event(redaction);
    new_event.redaction = Some((
        reply.clone(),
        serde_json::value::to_raw_value(&redacted).unwrap(),
    ));
    r.append(store, new_event).await;
    assert_eq!(store.relation_of(&reply).await.unwrap(), None);
    let top = StreamPos(i64::MAX);
    assert!(store
        .relations(&page(&r, &root, Direction::Backward, top))
        .await
        .unwrap()
        .is_empty());
    let roots = [root.clone()];
    let none = store
        .thread_summaries(&r.room_id, &roots, &user(ALICE), None)
        .await
        .unwrap();
    assert!(none.is_empty());

    // A rejected event relates to nothing.
    let content = json!({ "m.relates_to": { "rel_type": THREAD, "event_id": root } });
    let mut rejected = r.next_pdu(ALICE, "m.room.message", None, content.clone());
    rejected.rejected = true;
    let rejected_id = rejected.event_id.clone();
    r.append(store, r.new_event(rejected)).await;
    assert_eq!(store.relation_of(&rejected_id).await.unwrap(), None);

    // History fetched from another server is indexed like any other event.
    let old = pdu(
        "$rrold",
        r.room_id.as_str(),
        BOB,
        "m.room.message",
        None,
        content,
        1,
        &[],
    );
    store
        .persist_backfilled(vec![BackfilledEvent {
            pdu: old,
            state_snapshot: r.snapshot,
        }])
        .await
        .unwrap();
    let found = store
        .relations(&page(&r, &root, Direction::Backward, top))
        .await
        .unwrap();
    assert_eq!(ids(&found), [event("$rrold")]);
    assert!(found[0].stream_pos < StreamPos::ZERO);
}

/// Stores events that declare relations, valid and not, for each backend's test of its
/// relations migration; returns every event with its relation as indexed when stored. Once the
/// migration has run again over the same events (see [`relations_as_indexed`]), the index must
/// be the same: the migration's SQL parses as `Pdu::relation` does.
pub async fn events_for_the_relations_migration(
    store: &dyn Storage,
) -> Vec<(OwnedEventId, Option<myelin_core::Relation>)> {
    let mut r = TestRoom::create(store, "!relmig:localhost", ALICE, "mg").await;
    let (root, _) = r.message(store, ALICE, "root").await;
    let mut stored = vec![root.clone()];
    stored.push(
        relate(&mut r, store, ALICE, "m.room.message", THREAD, &root)
            .await
            .0,
    );
    stored.push(
        relate(&mut r, store, ALICE, "m.reaction", "m.annotation", &root)
            .await
            .0,
    );
    stored.push(
        relate(
            &mut r,
            store,
            ALICE,
            "m.room.message",
            &"x".repeat(255),
            &root,
        )
        .await
        .0,
    );
    let not_relations = [
        json!({ "m.relates_to": { "rel_type": "x".repeat(256), "event_id": root } }),
        json!({ "m.relates_to": { "rel_type": 7, "event_id": root } }),
        json!({ "m.relates_to": { "rel_type": THREAD, "event_id": "no-sigil" } }),
        json!({ "m.relates_to": { "rel_type": THREAD, "event_id": ["$a"] } }),
        json!({ "m.relates_to": { "m.in_reply_to": { "event_id": root } } }),
        json!({ "m.relates_to": "$a" }),
    ];
    for content in not_relations {
        let pdu = r.next_pdu(ALICE, "m.room.message", None, content);
        stored.push(pdu.event_id.clone());
        r.append(store, r.new_event(pdu)).await;
    }
    let mut rejected = r.next_pdu(
        ALICE,
        "m.room.message",
        None,
        json!({ "m.relates_to": { "rel_type": THREAD, "event_id": root } }),
    );
    rejected.rejected = true;
    stored.push(rejected.event_id.clone());
    r.append(store, r.new_event(rejected)).await;
    relations_as_indexed(store, &stored).await
}

/// Each event with the relation the index holds for it.
pub async fn relations_as_indexed(
    store: &dyn Storage,
    events: &[OwnedEventId],
) -> Vec<(OwnedEventId, Option<myelin_core::Relation>)> {
    let mut out = Vec::with_capacity(events.len());
    for id in events {
        out.push((
            id.clone(),
            store.relation_of(id).await.expect("relation_of"),
        ));
    }
    out
}

/// `related_parents`: of event IDs from many rooms, those something in their own room relates
/// to, each once; a relation from another room does not count.
pub async fn related_parents_across_rooms(store: &dyn Storage) {
    let mut a = TestRoom::create(store, "!rpa:localhost", ALICE, "rpa").await;
    let mut b = TestRoom::create(store, "!rpb:localhost", ALICE, "rpb").await;
    let (in_a, _) = a.message(store, ALICE, "a root").await;
    let (quiet_a, _) = a.message(store, ALICE, "a quiet").await;
    let (in_b, _) = b.message(store, ALICE, "b root").await;
    let (quiet_b, _) = b.message(store, ALICE, "b quiet").await;
    relate(&mut a, store, ALICE, "m.room.message", THREAD, &in_a).await;
    relate(&mut a, store, ALICE, "m.reaction", "m.annotation", &in_a).await;
    relate(&mut b, store, ALICE, "m.room.message", REFERENCE, &in_b).await;
    // Claims a relation to an event of room `a` from room `b`.
    relate(&mut b, store, ALICE, "m.room.message", THREAD, &quiet_a).await;
    let asked = [
        (a.room_id.clone(), in_a.clone()),
        (a.room_id.clone(), quiet_a.clone()),
        (b.room_id.clone(), in_b.clone()),
        (b.room_id.clone(), quiet_b.clone()),
        (a.room_id.clone(), in_a.clone()),
    ];
    let mut found = store.related_parents(&asked).await.unwrap();
    found.sort();
    let mut expected = vec![in_a, in_b];
    expected.sort();
    assert_eq!(
        found, expected,
        "each once, only relations in the same room"
    );
    assert!(store.related_parents(&[]).await.unwrap().is_empty());
}

/// `latest_events_related`: the timelines `latest_events_of` reads, and of their events those
/// something in their own room relates to, each once.
pub async fn latest_events_related_marks_related_events(store: &dyn Storage) {
    let mut a = TestRoom::create(store, "!lra:localhost", ALICE, "lra").await;
    let mut b = TestRoom::create(store, "!lrb:localhost", ALICE, "lrb").await;
    let (root_a, _) = a.message(store, ALICE, "a root").await;
    let (quiet_a, _) = a.message(store, ALICE, "a quiet").await;
    let (root_b, _) = b.message(store, ALICE, "b root").await;
    // Relates from room `b` to an event of room `a`: does not count.
    relate(&mut b, store, ALICE, "m.room.message", THREAD, &quiet_a).await;
    relate(&mut a, store, ALICE, "m.reaction", "m.annotation", &root_a).await;
    let (last_b, _) = b.message(store, ALICE, "b last").await;
    relate(&mut b, store, ALICE, "m.room.message", REFERENCE, &root_b).await;
    let now = store.current_stream_pos().await.unwrap();
    let span = |r: &TestRoom| TimelineSpan {
        room_id: r.room_id.clone(),
        from: now,
        floor: None,
    };
    // Both spans of room `a` read its root: it is listed once.
    let spans = [span(&a), span(&b), span(&a)];
    let found = store.latest_events_related(&spans, 4).await.unwrap();
    let plain = store.latest_events_of(&spans, 4).await.unwrap();
    assert_eq!(found.timelines.len(), spans.len(), "one timeline per span");
    for (found, plain) in found.timelines.iter().zip(&plain) {
        assert_eq!(ids(found), ids(plain), "as latest_events_of reads them");
    }
    assert!(ids(&found.timelines[0]).contains(&quiet_a));
    assert!(ids(&found.timelines[1]).contains(&last_b));
    let mut related = found.related.clone();
    related.sort();
    let mut expected = vec![root_a, root_b];
    expected.sort();
    assert_eq!(
        related, expected,
        "each once, only relations in the same room"
    );
    let none = store.latest_events_related(&spans, 0).await.unwrap();
    assert!(none.timelines.iter().all(Vec::is_empty) && none.related.is_empty());
    let empty = store.latest_events_related(&[], 4).await.unwrap();
    assert!(empty.timelines.is_empty() && empty.related.is_empty());
}
