//! Conformance tests of [`SearchStore`](crate::SearchStore): the index written with each event,
//! matching every term as a prefix, rank and recent order with their paging, the room and key
//! limits, and what redaction, rejection and backfill do to the index.

use super::*;
use crate::{search_terms, SearchOrder, SearchQuery};

const ALICE: &str = "@alice:localhost";

fn query(rooms: &[&TestRoom], terms: &str, order: SearchOrder) -> SearchQuery {
    SearchQuery {
        terms: search_terms(terms),
        rooms: rooms.iter().map(|r| r.room_id.clone()).collect(),
        keys: vec![
            "content.body".into(),
            "content.name".into(),
            "content.topic".into(),
        ],
        order,
        offset: 0,
        before: None,
        limit: 10,
    }
}

async fn hits(store: &dyn Storage, q: &SearchQuery) -> Vec<OwnedEventId> {
    store
        .search_events(q)
        .await
        .unwrap()
        .into_iter()
        .map(|h| h.event_id)
        .collect()
}

pub async fn search_finds_words_by_prefix_in_the_rooms_named(store: &dyn Storage) {
    let mut a = TestRoom::create(store, "!searcha:localhost", ALICE, "sa").await;
    let mut b = TestRoom::create(store, "!searchb:localhost", ALICE, "sb").await;
    let (lunch, _) = a
        .message(
            store,
            ALICE,
            "Who wants lunch today? Somewhere nice and quiet maybe",
        )
        .await;
    let (lunches, _) = a
        .message(store, ALICE, "lunch lunch lunch, lunches all around")
        .await;
    let (other_room, _) = b.message(store, ALICE, "lunch elsewhere").await;
    a.message(store, ALICE, "nothing to see").await;
    let topic = a.next_pdu(
        ALICE,
        "m.room.topic",
        Some(""),
        json!({ "topic": "Lunch planning" }),
    );
    let topic_id = topic.event_id.clone();
    a.append(store, a.new_event(topic)).await;

    let recent = hits(store, &query(&[&a], "LUNCH", SearchOrder::Recent)).await;
    assert_eq!(recent, [topic_id.clone(), lunches.clone(), lunch.clone()]);
    assert_eq!(
        store
            .count_search_results(&query(&[&a], "lunch", SearchOrder::Recent))
            .await
            .unwrap(),
        3
    );
    let both = hits(store, &query(&[&a, &b], "lunch", SearchOrder::Recent)).await;
    assert_eq!(both.len(), 4);
    assert!(both.contains(&other_room));
    // Prefixes match, every term is required, and syntax is only text.
    assert_eq!(
        hits(store, &query(&[&a], "wan toda", SearchOrder::Rank)).await,
        std::slice::from_ref(&lunch)
    );
    assert!(hits(store, &query(&[&a], "lunch zebra", SearchOrder::Rank))
        .await
        .is_empty());
    assert!(hits(
        store,
        &query(&[&a], "\"lunch\" OR NEAR(", SearchOrder::Rank)
    )
    .await
    .is_empty());
    // Only the keys asked for.
    let mut bodies = query(&[&a], "lunch", SearchOrder::Recent);
    bodies.keys = vec!["content.body".into()];
    assert_eq!(hits(store, &bodies).await, [lunches.clone(), lunch.clone()]);

    // Rank: the message saying it four times before the one saying it once; pages by offset.
    let mut ranked = bodies.clone();
    ranked.order = SearchOrder::Rank;
    let first = store.search_events(&ranked).await.unwrap();
    assert_eq!(first[0].event_id, lunches);
    assert!(first[0].rank >= first[1].rank);
    assert_eq!(first[1].event_id, lunch);
    ranked.offset = 1;
    ranked.limit = 5;
    assert_eq!(hits(store, &ranked).await, std::slice::from_ref(&lunch));
    // Recent: pages by position.
    let mut older = query(&[&a], "lunch", SearchOrder::Recent);
    older.before = Some(
        first
            .iter()
            .find(|h| h.event_id == lunches)
            .unwrap()
            .stream_pos,
    );
    assert_eq!(hits(store, &older).await, [lunch]);
}

pub async fn search_forgets_redacted_and_rejected_events_and_indexes_backfill(store: &dyn Storage) {
    let mut r = TestRoom::create(store, "!searchred:localhost", ALICE, "sr").await;
    let (secret, _) = r.message(store, ALICE, "pineapple secret").await;
    let record = store.get_event(&secret).await.unwrap().unwrap();
    let mut redacted: Value = serde_json::from_str(record.pdu.json.get()).unwrap();
    redacted["content"] = json!({});
    let redaction = r.next_pdu(
        ALICE,
        "m.room.redaction",
        None,
        json!({ "redacts": secret }),
    );
    let mut new_event = r.new_event(redaction);
    new_event.redaction = Some((secret, serde_json::value::to_raw_value(&redacted).unwrap()));
    r.append(store, new_event).await;
    assert!(hits(store, &query(&[&r], "pineapple", SearchOrder::Rank))
        .await
        .is_empty());

    let mut rejected = r.next_pdu(
        ALICE,
        "m.room.message",
        None,
        json!({ "body": "pineapple" }),
    );
    rejected.rejected = true;
    r.append(store, r.new_event(rejected)).await;
    assert!(hits(store, &query(&[&r], "pineapple", SearchOrder::Rank))
        .await
        .is_empty());

    let old = pdu(
        "$searchold",
        r.room_id.as_str(),
        ALICE,
        "m.room.message",
        None,
        json!({ "msgtype": "m.text", "body": "pineapple from long ago\u{0}" }),
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
    assert_eq!(
        hits(store, &query(&[&r], "pineapple", SearchOrder::Rank)).await,
        [event("$searchold")]
    );
}
