//! The push subsystem's own decisions: who an event notifies (rules, mentions, encryption, the
//! sender), counts reset by receipts and per thread, rule changes applied at once, redactions,
//! `/notifications`, and which pusher bodies are refused.

use myelin_core::Clock;
use myelin_storage::NotificationCounts;
use ruma::{OwnedEventId, RoomId};
use serde_json::{json, Value};

use crate::{
    accounts::Authed,
    test_support::{harness, Harness},
    ServiceError,
};

async fn send(
    h: &Harness,
    who: &Authed,
    room: &RoomId,
    kind: &str,
    content: Value,
) -> OwnedEventId {
    let txn = format!("p{}", h.clock.now_ms());
    h.clock.advance(1);
    h.services
        .rooms
        .send_message(who, room, kind, &txn, content)
        .await
        .expect("send")
}

async fn counts(h: &Harness, who: &Authed, room: &RoomId) -> NotificationCounts {
    h.services
        .push
        .unread_counts(&who.user_id, room)
        .await
        .expect("counts")
        .total()
}

fn c(notifications: u64, highlights: u64) -> NotificationCounts {
    NotificationCounts {
        notifications,
        highlights,
    }
}

#[tokio::test]
async fn a_mention_highlights_and_a_read_receipt_resets_the_counts() {
    let h = harness();
    let (alice, bob) = (h.user("alice").await, h.user("bob").await);
    let room = h.room(&alice, "public_chat").await;
    h.join(&bob, &room).await.unwrap();

    h.say(&alice, &room, "hello").await.unwrap();
    let mention = json!({
        "msgtype": "m.text",
        "body": "bob: look",
        "m.mentions": {"user_ids": [bob.user_id]},
    });
    let last = send(&h, &alice, &room, "m.room.message", mention).await;
    assert_eq!(counts(&h, &bob, &room).await, c(2, 1));
    // The sender is never notified of their own events.
    assert_eq!(counts(&h, &alice, &room).await, c(0, 0));

    let page = h
        .services
        .push
        .notifications(&bob.user_id, None, None, Some("highlight"))
        .await
        .unwrap();
    assert_eq!(page.notifications.len(), 1);
    assert_eq!(page.notifications[0].event["event_id"], json!(last));
    assert!(!page.notifications[0].read);

    h.services
        .ephemeral
        .set_receipt(&bob, &room, "m.read", &last, None)
        .await
        .unwrap();
    assert_eq!(counts(&h, &bob, &room).await, c(0, 0));
    let page = h
        .services
        .push
        .notifications(&bob.user_id, None, Some(1), None)
        .await
        .unwrap();
    assert!(page.notifications[0].read);
    assert!(page.next_token.is_some());
}

#[tokio::test]
async fn encrypted_events_notify_and_threads_count_apart() {
    let h = harness();
    let (alice, bob) = (h.user("alice").await, h.user("bob").await);
    let room = h.room(&alice, "public_chat").await;
    h.join(&bob, &room).await.unwrap();

    let root = h.say(&alice, &room, "root").await.unwrap();
    let encrypted = json!({"algorithm": "m.megolm.v1.aes-sha2", "ciphertext": "xyz"});
    send(&h, &alice, &room, "m.room.encrypted", encrypted).await;
    let reply = json!({
        "msgtype": "m.text",
        "body": "in a thread",
        "m.relates_to": {"rel_type": "m.thread", "event_id": root},
    });
    send(&h, &alice, &room, "m.room.message", reply).await;
    let got = h
        .services
        .push
        .unread_counts(&bob.user_id, &room)
        .await
        .unwrap();
    assert_eq!(got.main, c(2, 0));
    assert_eq!(got.threads, vec![(root.to_string(), c(1, 0))]);
}

#[tokio::test]
async fn a_changed_rule_applies_to_the_next_event_and_redactions_uncount() {
    let h = harness();
    let (alice, bob) = (h.user("alice").await, h.user("bob").await);
    let room = h.room(&alice, "public_chat").await;
    h.join(&bob, &room).await.unwrap();

    let first = h.say(&alice, &room, "one").await.unwrap();
    assert_eq!(counts(&h, &bob, &room).await, c(1, 0));
    h.services
        .rooms
        .redact(&alice, &room, &first, "r1", None)
        .await
        .unwrap();
    assert_eq!(counts(&h, &bob, &room).await, c(0, 0));

    // A room rule with no actions silences the room (the cached ruleset is dropped).
    let silence = crate::users::push_rules::NewRuleBody::default();
    h.services
        .users
        .set_push_rule(
            &bob.user_id,
            "room",
            room.as_str(),
            silence,
            Default::default(),
        )
        .await
        .unwrap();
    h.say(&alice, &room, "two").await.unwrap();
    assert_eq!(counts(&h, &bob, &room).await, c(0, 0));
}

#[tokio::test]
async fn pusher_bodies_are_checked_and_owned_by_the_device() {
    let h = harness();
    let bob = h.user("bob").await;
    let push = &h.services.push;
    let good = json!({
        "kind": "http", "app_id": "org.example", "pushkey": "k1",
        "app_display_name": "App", "device_display_name": "Phone", "lang": "en",
        "data": {"url": "https://push.example.org/_matrix/push/v1/notify", "format": "event_id_only"},
    });
    let refused = |body: Value| push.parse_set(&bob.user_id, &bob.device_id, &body);
    let mut missing = good.clone();
    missing.as_object_mut().unwrap().remove("lang");
    assert!(matches!(
        refused(missing),
        Err(ServiceError::MissingParam(_))
    ));
    for url in [
        "https://push.example.org/other/path",
        "http://push.example.org/_matrix/push/v1/notify",
        "https://10.1.2.3/_matrix/push/v1/notify",
    ] {
        let mut bad = good.clone();
        bad["data"]["url"] = json!(url);
        let outcome = refused(bad);
        assert!(
            matches!(outcome, Err(ServiceError::InvalidParam(_))),
            "{url}: {outcome:?}"
        );
    }
    let mut email = good.clone();
    email["kind"] = json!("email");
    assert!(refused(email).is_err());

    push.set_pusher(&bob.user_id, &bob.device_id, &good)
        .await
        .unwrap();
    let listed = push.pushers_json(&bob.user_id).await.unwrap();
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0]["data"]["format"], "event_id_only");
    let delete = json!({"kind": null, "app_id": "org.example", "pushkey": "k1"});
    push.set_pusher(&bob.user_id, &bob.device_id, &delete)
        .await
        .unwrap();
    assert!(push.pushers_json(&bob.user_id).await.unwrap().is_empty());

    // Logging out takes the device's pushers with it.
    push.set_pusher(&bob.user_id, &bob.device_id, &good)
        .await
        .unwrap();
    h.services.accounts.logout(&bob).await.unwrap();
    assert!(push.pushers_json(&bob.user_id).await.unwrap().is_empty());
}

#[tokio::test]
async fn an_invite_notifies_the_invitee() {
    let h = harness();
    let (alice, bob) = (h.user("alice").await, h.user("bob").await);
    let room = h.room(&alice, "private_chat").await;
    h.services
        .membership
        .invite(&alice.user_id, &room, &bob.user_id, None)
        .await
        .unwrap();
    let page = h
        .services
        .push
        .notifications(&bob.user_id, None, None, None)
        .await
        .unwrap();
    assert_eq!(page.notifications.len(), 1);
    assert_eq!(
        page.notifications[0].event["content"]["membership"],
        "invite"
    );
    // Once joined, the invite is not unread in the room.
    h.join(&bob, &room).await.unwrap();
    assert_eq!(counts(&h, &bob, &room).await, c(0, 0));
    h.say(&alice, &room, "welcome").await.unwrap();
    assert_eq!(counts(&h, &bob, &room).await, c(1, 0));
}

#[test]
fn the_ruleset_json_has_all_five_kinds() {
    let user = ruma::user_id!("@bob:test.local");
    let json =
        crate::users::push_rules::ruleset_json(&ruma::push::Ruleset::server_default(user)).unwrap();
    for kind in ["override", "content", "room", "sender", "underride"] {
        assert!(json[kind].is_array(), "{kind}: {json}");
    }
}

#[tokio::test]
async fn members_with_default_rules_share_an_outcome_unless_the_event_names_them() {
    let h = harness();
    let alice = h.user("alice").await;
    let room = h.room(&alice, "public_chat").await;
    let mut members = Vec::new();
    for name in ["bob", "carol", "dave", "erin", "frank"] {
        let member = h.user(name).await;
        h.join(&member, &room).await.unwrap();
        members.push(member);
    }
    let frank = &members[4];
    h.services
        .users
        .set_push_rule(
            &frank.user_id,
            "room",
            room.as_str(),
            crate::users::push_rules::NewRuleBody::default(),
            Default::default(),
        )
        .await
        .unwrap();

    h.say(&alice, &room, "hello").await.unwrap();
    let dave = &members[2];
    let mention = json!({
        "msgtype": "m.text",
        "body": "hey",
        "m.mentions": {"user_ids": [dave.user_id]},
    });
    send(&h, &alice, &room, "m.room.message", mention).await;

    for (member, expected) in members
        .iter()
        .zip([c(2, 0), c(2, 0), c(2, 1), c(2, 0), c(0, 0)])
    {
        assert_eq!(
            counts(&h, member, &room).await,
            expected,
            "{}",
            member.user_id
        );
    }
}

#[tokio::test]
async fn state_changes_apply_to_the_next_event() {
    let h = harness();
    let alice = h.user("alice").await;
    let room = h.room(&alice, "public_chat").await;
    let bob = h.user("bob").await;
    h.join(&bob, &room).await.unwrap();
    let room_mention =
        || json!({"msgtype": "m.text", "body": "everyone!", "m.mentions": {"room": true}});
    // Bob may not notify the room yet: his `@room` notifies as a message, without highlight.
    // This first evaluation also works out the room's facts (members, power levels).
    send(&h, &bob, &room, "m.room.message", room_mention()).await;
    assert_eq!(counts(&h, &alice, &room).await, c(1, 0));

    let power = json!({"users": {alice.user_id.as_str(): 100, bob.user_id.as_str(): 50}});
    h.services
        .rooms
        .send_state(&alice, &room, "m.room.power_levels", "", power)
        .await
        .unwrap();
    send(&h, &bob, &room, "m.room.message", room_mention()).await;
    assert_eq!(
        counts(&h, &alice, &room).await,
        c(2, 1),
        "the new power levels apply from the next event on"
    );

    // A member who joins later is evaluated for too.
    let carol = h.user("carol").await;
    h.join(&carol, &room).await.unwrap();
    h.say(&alice, &room, "hi all").await.unwrap();
    assert_eq!(counts(&h, &carol, &room).await, c(1, 0));
}
