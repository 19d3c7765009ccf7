//! The decisions of relations, threads and bundled aggregations: what each reader is shown.

use myelin_core::Clock;
use myelin_storage::Direction;
use ruma::{OwnedEventId, OwnedRoomId};
use serde_json::{json, Value};

use super::{RelationsRequest, ThreadsInclude};
use crate::{
    accounts::Authed,
    filter::RoomEventFilter,
    test_support::{harness, Harness},
    ServiceError,
};

/// Sends an event of `kind` with `content`.
async fn send(
    h: &Harness,
    who: &Authed,
    room: &OwnedRoomId,
    kind: &str,
    content: Value,
) -> OwnedEventId {
    let txn = format!("r{}", h.clock.now_ms());
    h.clock.advance(1);
    h.services
        .rooms
        .send_message(who, room, kind, &txn, content)
        .await
        .expect("send")
}

fn reply(root: &OwnedEventId, body: &str) -> Value {
    json!({ "msgtype": "m.text", "body": body,
            "m.relates_to": { "rel_type": "m.thread", "event_id": root } })
}

fn edit(original: &OwnedEventId, body: &str) -> Value {
    json!({ "msgtype": "m.text", "body": format!("* {body}"),
            "m.new_content": { "msgtype": "m.text", "body": body },
            "m.relates_to": { "rel_type": "m.replace", "event_id": original } })
}

fn all_relations() -> RelationsRequest {
    RelationsRequest {
        rel_type: None,
        event_type: None,
        from: None,
        to: None,
        dir: Direction::Backward,
        limit: Some(50),
        recurse: false,
    }
}

/// `GET /event` of `id` as `who`.
async fn event(h: &Harness, who: &Authed, room: &OwnedRoomId, id: &OwnedEventId) -> Value {
    h.services
        .history
        .get_room_event(&who.user_id, &who.device_id, room, id)
        .await
        .expect("event")
}

/// The first page of `/threads` as `who`.
async fn threads(
    h: &Harness,
    who: &Authed,
    room: &OwnedRoomId,
    include: ThreadsInclude,
) -> Vec<Value> {
    h.services
        .history
        .threads(&who.user_id, &who.device_id, room, include, None, None)
        .await
        .expect("threads")
        .chunk
}

fn ids(chunk: &[Value]) -> Vec<&str> {
    chunk
        .iter()
        .filter_map(|e| e["event_id"].as_str())
        .collect()
}

#[tokio::test]
async fn a_thread_is_summarised_for_each_reader() {
    let h = harness();
    let (alice, bob, carol) = (
        h.user("alice").await,
        h.user("bob").await,
        h.user("carol").await,
    );
    let room = h.room(&alice, "public_chat").await;
    h.join(&bob, &room).await.unwrap();
    h.join(&carol, &room).await.unwrap();
    let root = h.say(&alice, &room, "root").await.unwrap();
    send(&h, &alice, &room, "m.room.message", reply(&root, "one")).await;
    let latest = send(&h, &bob, &room, "m.room.message", reply(&root, "two")).await;

    let seen_by_carol = event(&h, &carol, &room, &root).await;
    let thread = &seen_by_carol["unsigned"]["m.relations"]["m.thread"];
    assert_eq!(thread["count"], 2);
    assert_eq!(thread["latest_event"]["event_id"], latest.as_str());
    assert_eq!(thread["latest_event"]["content"]["body"], "two");
    assert_eq!(thread["current_user_participated"], false);
    let seen_by_bob = event(&h, &bob, &room, &root).await;
    assert_eq!(
        seen_by_bob["unsigned"]["m.relations"]["m.thread"]["current_user_participated"],
        true
    );
    let seen_by_alice = event(&h, &alice, &room, &root).await;
    assert_eq!(
        seen_by_alice["unsigned"]["m.relations"]["m.thread"]["current_user_participated"], true,
        "she started it"
    );
    // A reply is not a thread root.
    let reply_seen = event(&h, &carol, &room, &latest).await;
    assert!(
        reply_seen["unsigned"].get("m.relations").is_none(),
        "{reply_seen}"
    );

    let all = threads(&h, &carol, &room, ThreadsInclude::All).await;
    assert_eq!(ids(&all), [root.as_str()]);
    assert_eq!(all[0]["unsigned"]["m.relations"]["m.thread"]["count"], 2);
    assert!(threads(&h, &carol, &room, ThreadsInclude::Participated)
        .await
        .is_empty());
    let bobs = threads(&h, &bob, &room, ThreadsInclude::Participated).await;
    assert_eq!(ids(&bobs), [root.as_str()]);
}

#[tokio::test]
async fn only_a_valid_edit_by_the_sender_is_bundled() {
    let h = harness();
    let (alice, bob) = (h.user("alice").await, h.user("bob").await);
    let room = h.room(&alice, "public_chat").await;
    h.join(&bob, &room).await.unwrap();
    let original = h.say(&alice, &room, "hello").await.unwrap();
    let first = send(
        &h,
        &alice,
        &room,
        "m.room.message",
        edit(&original, "hello!"),
    )
    .await;
    let newest = send(
        &h,
        &alice,
        &room,
        "m.room.message",
        edit(&original, "hello!!"),
    )
    .await;
    // Not valid: another sender, no new content, another type.
    send(
        &h,
        &bob,
        &room,
        "m.room.message",
        edit(&original, "hijacked"),
    )
    .await;
    let mut bare = edit(&original, "bare");
    bare.as_object_mut().unwrap().remove("m.new_content");
    send(&h, &alice, &room, "m.room.message", bare).await;
    send(&h, &alice, &room, "m.sticker", edit(&original, "sticker")).await;

    let seen = event(&h, &bob, &room, &original).await;
    let replace = &seen["unsigned"]["m.relations"]["m.replace"];
    assert_eq!(replace["event_id"], newest.as_str(), "{seen}");
    assert_eq!(replace["content"]["m.new_content"]["body"], "hello!!");
    // An edit has no aggregations of its own.
    let edit_seen = event(&h, &bob, &room, &first).await;
    assert!(edit_seen["unsigned"].get("m.relations").is_none());

    // Redacting the original drops its edit, also from /relations.
    h.services
        .rooms
        .redact(&alice, &room, &original, "red1", None)
        .await
        .unwrap();
    let seen = event(&h, &bob, &room, &original).await;
    assert!(
        seen["unsigned"]["m.relations"].get("m.replace").is_none(),
        "{seen}"
    );
    let page = h
        .services
        .history
        .relations(
            &bob.user_id,
            &bob.device_id,
            &room,
            &original,
            all_relations(),
        )
        .await
        .unwrap();
    assert!(
        page.chunk
            .iter()
            .all(|e| e["content"]["m.relates_to"]["rel_type"] != "m.replace"),
        "{:?}",
        page.chunk
    );
}

#[tokio::test]
async fn relations_are_filtered_paged_and_follow_redactions() {
    let h = harness();
    let (alice, bob) = (h.user("alice").await, h.user("bob").await);
    let room = h.room(&alice, "public_chat").await;
    h.join(&bob, &room).await.unwrap();
    let root = h.say(&alice, &room, "root").await.unwrap();
    let r1 = send(&h, &alice, &room, "m.room.message", reply(&root, "one")).await;
    let r2 = send(&h, &bob, &room, "m.room.message", reply(&root, "two")).await;
    let like =
        json!({ "m.relates_to": { "rel_type": "m.annotation", "event_id": root, "key": "👍" } });
    let reaction = send(&h, &bob, &room, "m.reaction", like).await;
    let reference = json!({ "m.relates_to": { "rel_type": "m.reference", "event_id": root } });
    let referrer = send(&h, &bob, &room, "m.key.verification.done", reference).await;
    let history = &h.services.history;
    let list =
        |req: RelationsRequest| history.relations(&bob.user_id, &bob.device_id, &room, &root, req);

    let all = list(all_relations()).await.unwrap();
    assert_eq!(
        ids(&all.chunk),
        [
            referrer.as_str(),
            reaction.as_str(),
            r2.as_str(),
            r1.as_str()
        ]
    );
    assert_eq!((all.next_batch, all.recursion_depth), (None, None));
    let mut threads = all_relations();
    threads.rel_type = Some("m.thread".into());
    threads.limit = Some(1);
    let first = list(threads.clone()).await.unwrap();
    assert_eq!(ids(&first.chunk), [r2.as_str()]);
    threads.from = first.next_batch;
    let second = list(threads.clone()).await.unwrap();
    assert_eq!(
        (ids(&second.chunk), second.next_batch),
        (vec![r1.as_str()], None)
    );
    assert_eq!(second.prev_batch, first.next_batch);
    let mut reactions = all_relations();
    reactions.rel_type = Some("m.annotation".into());
    reactions.event_type = Some("m.reaction".into());
    assert_eq!(
        ids(&list(reactions).await.unwrap().chunk),
        [reaction.as_str()]
    );

    let root_seen = event(&h, &bob, &room, &root).await;
    assert_eq!(
        root_seen["unsigned"]["m.relations"]["m.reference"],
        json!({ "chunk": [{ "event_id": referrer }] })
    );

    h.services
        .rooms
        .redact(&bob, &room, &r2, "red2", None)
        .await
        .unwrap();
    let after = list(all_relations()).await.unwrap();
    assert_eq!(
        ids(&after.chunk),
        [referrer.as_str(), reaction.as_str(), r1.as_str()]
    );
    let root_seen = event(&h, &bob, &room, &root).await;
    let thread = &root_seen["unsigned"]["m.relations"]["m.thread"];
    assert_eq!(
        (
            thread["count"].clone(),
            thread["latest_event"]["event_id"].clone()
        ),
        (json!(1), json!(r1))
    );
}

#[tokio::test]
async fn who_may_not_read_gets_nothing() {
    let h = harness();
    let (alice, bob, eve) = (
        h.user("alice").await,
        h.user("bob").await,
        h.user("eve").await,
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
    let root = h.say(&alice, &room, "before bob").await.unwrap();
    send(
        &h,
        &alice,
        &room,
        "m.room.message",
        reply(&root, "also before"),
    )
    .await;
    h.join(&bob, &room).await.unwrap();
    let history = &h.services.history;

    let hidden = history
        .relations(&bob.user_id, &bob.device_id, &room, &root, all_relations())
        .await;
    assert!(
        matches!(hidden, Err(ServiceError::NotFound(_))),
        "{:?}",
        hidden.is_ok()
    );
    let stranger = history
        .relations(&eve.user_id, &eve.device_id, &room, &root, all_relations())
        .await;
    assert!(
        matches!(stranger, Err(ServiceError::Forbidden(_))),
        "{:?}",
        stranger.is_ok()
    );
    let threads = history
        .threads(
            &eve.user_id,
            &eve.device_id,
            &room,
            ThreadsInclude::All,
            None,
            None,
        )
        .await;
    assert!(matches!(threads, Err(ServiceError::Forbidden(_))));
    let listed = history
        .threads(
            &bob.user_id,
            &bob.device_id,
            &room,
            ThreadsInclude::All,
            None,
            None,
        )
        .await
        .unwrap();
    assert!(
        listed.chunk.is_empty(),
        "a root bob may not see is not listed"
    );

    // A thread bob sees, whose replies after he left he may not.
    let root = h.say(&alice, &room, "with bob").await.unwrap();
    let seen_reply = send(
        &h,
        &alice,
        &room,
        "m.room.message",
        reply(&root, "bob sees this"),
    )
    .await;
    h.services
        .membership
        .leave_room(&bob.user_id, &room, None)
        .await
        .unwrap();
    send(
        &h,
        &alice,
        &room,
        "m.room.message",
        reply(&root, "after bob left"),
    )
    .await;
    let page = history
        .relations(&bob.user_id, &bob.device_id, &room, &root, all_relations())
        .await
        .unwrap();
    assert_eq!(ids(&page.chunk), [seen_reply.as_str()]);
    let root_seen = event(&h, &bob, &room, &root).await;
    let thread = &root_seen["unsigned"]["m.relations"]["m.thread"];
    assert_eq!(
        (
            thread["count"].clone(),
            thread["latest_event"]["event_id"].clone()
        ),
        (json!(1), json!(seen_reply))
    );
}

#[tokio::test]
async fn messages_keep_only_events_related_as_the_filter_asks() {
    let h = harness();
    let (alice, bob) = (h.user("alice").await, h.user("bob").await);
    let room = h.room(&alice, "public_chat").await;
    h.join(&bob, &room).await.unwrap();
    let threaded = h.say(&alice, &room, "threaded").await.unwrap();
    h.say(&alice, &room, "plain").await.unwrap();
    send(
        &h,
        &bob,
        &room,
        "m.room.message",
        reply(&threaded, "in thread"),
    )
    .await;
    let filter: RoomEventFilter = serde_json::from_value(json!({
        "related_by_senders": [bob.user_id.as_str()], "related_by_rel_types": ["m.thread"]
    }))
    .unwrap();
    let page = h
        .services
        .history
        .messages(
            &alice.user_id,
            &alice.device_id,
            &room,
            None,
            None,
            Direction::Backward,
            50,
            &filter,
        )
        .await
        .unwrap();
    assert_eq!(ids(&page.chunk), [threaded.as_str()]);
    assert_eq!(
        page.chunk[0]["unsigned"]["m.relations"]["m.thread"]["count"],
        1
    );
}
