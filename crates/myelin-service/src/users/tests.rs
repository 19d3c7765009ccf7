//! The users subsystem's own decisions: account data scopes, tags, filters.

use serde_json::json;

use crate::{test_support::harness, ServiceError};

#[tokio::test]
async fn account_data_is_per_user_and_per_room() {
    let h = harness();
    let (alice, bob) = (h.user("alice").await, h.user("bob").await);
    let room = h.room(&alice, "public_chat").await;
    let users = &h.services.users;
    users
        .set_account_data(&alice.user_id, None, "org.example", json!({ "a": 1 }))
        .await
        .unwrap();
    users
        .set_account_data(
            &alice.user_id,
            Some(&room),
            "org.example",
            json!({ "a": 2 }),
        )
        .await
        .unwrap();
    let global = users
        .get_account_data(&alice.user_id, None, "org.example")
        .await;
    assert_eq!(global.unwrap(), json!({ "a": 1 }));
    let in_room = users
        .get_account_data(&alice.user_id, Some(&room), "org.example")
        .await;
    assert_eq!(in_room.unwrap(), json!({ "a": 2 }));
    let bobs = users
        .get_account_data(&bob.user_id, None, "org.example")
        .await;
    assert!(matches!(bobs, Err(ServiceError::NotFound(_))), "{bobs:?}");

    let not_object = users
        .set_account_data(&alice.user_id, None, "org.example", json!([1]))
        .await;
    assert!(
        matches!(not_object, Err(ServiceError::BadJson(_))),
        "{not_object:?}"
    );
}

#[tokio::test]
async fn tags_are_added_and_removed_one_by_one() {
    let h = harness();
    let alice = h.user("alice").await;
    let room = h.room(&alice, "public_chat").await;
    let users = &h.services.users;
    users
        .set_tag(
            &alice.user_id,
            &room,
            "m.favourite",
            Some(json!({ "order": 0.5 })),
        )
        .await
        .unwrap();
    users
        .set_tag(&alice.user_id, &room, "u.work", Some(json!({})))
        .await
        .unwrap();
    users
        .set_tag(&alice.user_id, &room, "u.work", None)
        .await
        .unwrap();
    let tags = users.tags(&alice.user_id, &room).await.unwrap();
    assert_eq!(tags, json!({ "m.favourite": { "order": 0.5 } }));
}

#[tokio::test]
async fn a_filter_is_checked_then_kept_for_its_owner() {
    let h = harness();
    let (alice, bob) = (h.user("alice").await, h.user("bob").await);
    let users = &h.services.users;
    let bad = users
        .create_filter(
            &alice.user_id,
            json!({ "room": { "timeline": { "limit": "ten" } } }),
        )
        .await;
    assert!(matches!(bad, Err(ServiceError::BadJson(_))), "{bad:?}");
    let filter = json!({ "room": { "timeline": { "limit": 10 } } });
    let id = users
        .create_filter(&alice.user_id, filter.clone())
        .await
        .unwrap();
    assert_eq!(users.get_filter(&alice.user_id, &id).await.unwrap(), filter);
    let not_bobs = users.get_filter(&bob.user_id, &id).await;
    assert!(
        matches!(not_bobs, Err(ServiceError::NotFound(_))),
        "{not_bobs:?}"
    );
}

#[test]
fn the_ignore_list_is_read_from_its_keys() {
    let list = super::data::ignored_in(&json!({
        "ignored_users": { "@a:x": {}, "not a user": {}, "@b:y": { "why": "noise" } }
    }));
    let mut ids: Vec<_> = list.iter().map(|u| u.as_str()).collect();
    ids.sort();
    assert_eq!(ids, ["@a:x", "@b:y"]);
    assert!(super::data::ignored_in(&json!({ "ignored_users": [] })).is_empty());
    assert!(super::data::ignored_in(&json!({})).is_empty());
}
