//! Search's own decisions: only what the searcher may see (joined rooms, history visibility,
//! their ignore list), the filter, paging in both orders, and the decorations asked for.

use serde_json::{json, Value};

use super::RoomEventsCriteria;
use crate::{test_support::harness, ServiceError};

fn criteria(body: Value) -> RoomEventsCriteria {
    serde_json::from_value(body).expect("criteria")
}

fn bodies(response: &Value) -> Vec<String> {
    response["search_categories"]["room_events"]["results"]
        .as_array()
        .expect("results")
        .iter()
        .map(|r| {
            r["result"]["content"]["body"]
                .as_str()
                .unwrap_or("")
                .to_owned()
        })
        .collect()
}

#[tokio::test]
async fn finds_only_what_the_searcher_may_see() {
    let h = harness();
    let (alice, bob, carol) = (
        h.user("alice").await,
        h.user("bob").await,
        h.user("carol").await,
    );
    let room = h.room(&alice, "public_chat").await;
    h.services
        .rooms
        .send_state(
            &alice,
            &room,
            "m.room.history_visibility",
            "",
            json!({ "history_visibility": "joined" }),
        )
        .await
        .unwrap();
    h.say(&alice, &room, "banana before bob").await.unwrap();
    h.join(&bob, &room).await.unwrap();
    h.join(&carol, &room).await.unwrap();
    h.say(&alice, &room, "banana after bob").await.unwrap();
    h.say(&carol, &room, "banana from carol").await.unwrap();
    let private = h.room(&alice, "private_chat").await;
    h.say(&alice, &private, "banana in private").await.unwrap();

    let search = &h.services.search;
    let found = search
        .search_room_events(
            &bob,
            criteria(json!({ "search_term": "banana", "order_by": "recent" })),
            None,
        )
        .await
        .unwrap();
    assert_eq!(bodies(&found), ["banana from carol", "banana after bob"]);
    assert_eq!(
        found["search_categories"]["room_events"]["highlights"],
        json!(["banana"])
    );

    // Carol ignored: her messages are gone from Bob's results.
    h.services
        .users
        .set_account_data(
            &bob.user_id,
            None,
            "m.ignored_user_list",
            json!({ "ignored_users": { carol.user_id.as_str(): {} } }),
        )
        .await
        .unwrap();
    let found = search
        .search_room_events(&bob, criteria(json!({ "search_term": "banana" })), None)
        .await
        .unwrap();
    assert_eq!(bodies(&found), ["banana after bob"]);

    // The filter narrows by sender.
    let found = search
        .search_room_events(
            &alice,
            criteria(json!({ "search_term": "banana", "order_by": "recent", "filter": { "senders": [carol.user_id] } })),
            None,
        )
        .await
        .unwrap();
    assert_eq!(bodies(&found), ["banana from carol"]);
}

#[tokio::test]
async fn pages_follow_next_batch_in_both_orders() {
    let h = harness();
    let alice = h.user("alice").await;
    let room = h.room(&alice, "private_chat").await;
    for i in 0..7 {
        h.say(&alice, &room, &format!("cherry number {i}"))
            .await
            .unwrap();
    }
    let search = &h.services.search;
    for order in ["recent", "rank"] {
        let mut seen = Vec::new();
        let mut next: Option<String> = None;
        for _ in 0..5 {
            let c = criteria(
                json!({ "search_term": "cherry", "order_by": order, "filter": { "limit": 3 } }),
            );
            let page = search
                .search_room_events(&alice, c, next.as_deref())
                .await
                .unwrap();
            let events = &page["search_categories"]["room_events"];
            assert_eq!(events["count"], 7);
            seen.extend(bodies(&page));
            next = events["next_batch"].as_str().map(str::to_owned);
            if next.is_none() {
                break;
            }
        }
        seen.sort();
        seen.dedup();
        assert_eq!(seen.len(), 7, "{order}: every result once: {seen:?}");
    }
    let recent = search
        .search_room_events(
            &alice,
            criteria(
                json!({ "search_term": "cherry", "order_by": "recent", "filter": { "limit": 1 } }),
            ),
            None,
        )
        .await
        .unwrap();
    assert_eq!(bodies(&recent), ["cherry number 6"]);
    let wrong = search
        .search_room_events(
            &alice,
            criteria(json!({ "search_term": "cherry", "order_by": "rank" })),
            Some("p5"),
        )
        .await;
    assert!(
        matches!(wrong, Err(ServiceError::InvalidParam(_))),
        "{wrong:?}"
    );
}

#[tokio::test]
async fn context_state_groups_and_bad_criteria() {
    let h = harness();
    let alice = h.user("alice").await;
    let room = h.room(&alice, "private_chat").await;
    h.say(&alice, &room, "one").await.unwrap();
    h.say(&alice, &room, "durian").await.unwrap();
    h.say(&alice, &room, "three").await.unwrap();
    let body = json!({
        "search_term": "durian",
        "event_context": { "before_limit": 1, "after_limit": 1, "include_profile": true },
        "include_state": true,
        "groupings": { "group_by": [{ "key": "room_id" }, { "key": "sender" }] }
    });
    let found = h
        .services
        .search
        .search_room_events(&alice, criteria(body), None)
        .await
        .unwrap();
    let events = &found["search_categories"]["room_events"];
    let context = &events["results"][0]["context"];
    assert_eq!(context["events_before"][0]["content"]["body"], "one");
    assert_eq!(context["events_after"][0]["content"]["body"], "three");
    assert_eq!(
        context["profile_info"][alice.user_id.as_str()]["displayname"],
        "alice"
    );
    assert!(events["state"][room.as_str()]
        .as_array()
        .unwrap()
        .iter()
        .any(|e| e["type"] == "m.room.create"));
    assert_eq!(
        events["groups"]["room_id"][room.as_str()]["results"]
            .as_array()
            .unwrap()
            .len(),
        1
    );
    assert_eq!(
        events["groups"]["sender"][alice.user_id.as_str()]["order"],
        0
    );

    let search = &h.services.search;
    for bad in [
        json!({ "search_term": "" }),
        json!({ "search_term": "x", "keys": ["content.secret"] }),
        json!({ "search_term": "x", "order_by": "random" }),
        json!({ "search_term": "x", "groupings": { "group_by": [{ "key": "type" }] } }),
    ] {
        let refused = search
            .search_room_events(&alice, criteria(bad.clone()), None)
            .await;
        assert!(
            matches!(
                refused,
                Err(ServiceError::InvalidParam(_) | ServiceError::BadJson(_))
            ),
            "{bad}: {refused:?}"
        );
    }
}
