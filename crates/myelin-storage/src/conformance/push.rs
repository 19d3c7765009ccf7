//! Conformance: notification rows written with their event, counts after read receipts (threaded
//! and not), `/notifications` pages, pushers and their queues.

use myelin_core::StreamPos;
use serde_json::json;

use super::{device, event, new_user, session, user, TestRoom};
use crate::{
    NewPushAction, NotificationCounts, PusherRecord, ReceiptRecord, RoomNotificationCounts, Storage,
};

const BOB: &str = "@bob:localhost";

fn action(highlight: bool, thread: Option<&str>) -> Vec<NewPushAction> {
    vec![NewPushAction {
        user_id: user(BOB),
        actions: r#"["notify"]"#.into(),
        highlight,
        thread_id: thread.map(str::to_owned),
        queue: true,
    }]
}

fn counts(notifications: u64, highlights: u64) -> NotificationCounts {
    NotificationCounts {
        notifications,
        highlights,
    }
}

async fn notify(r: &mut TestRoom, store: &dyn Storage, actions: Vec<NewPushAction>) -> String {
    let pdu = r.next_pdu(
        "@alice:localhost",
        "m.room.message",
        None,
        json!({"body": "hi"}),
    );
    let id = pdu.event_id.to_string();
    let mut new_event = r.new_event(pdu);
    new_event.push_actions = actions;
    r.append(store, new_event).await;
    id
}

async fn read_up_to(store: &dyn Storage, r: &TestRoom, kind: &str, thread: Option<&str>, id: &str) {
    store
        .set_receipt(ReceiptRecord {
            room_id: r.room_id.clone(),
            receipt_type: kind.into(),
            user_id: user(BOB),
            thread_id: thread.map(str::to_owned),
            event_id: event(id),
            ts: 1,
            stream_pos: StreamPos::ZERO,
        })
        .await
        .unwrap();
}

fn pusher(device_id: &str, user_id: &str, pushkey: &str) -> PusherRecord {
    PusherRecord {
        id: 0,
        user_id: user(user_id),
        device_id: device_id.into(),
        kind: "http".into(),
        app_id: "org.example.app".into(),
        pushkey: pushkey.into(),
        app_display_name: "App".into(),
        device_display_name: "Phone".into(),
        profile_tag: None,
        lang: "en".into(),
        data: r#"{"url":"https://push.example.org/_matrix/push/v1/notify"}"#.into(),
        created_ms: 5,
    }
}

pub async fn notification_counts_follow_read_receipts(store: &dyn Storage) {
    counts_scenario(store, "!pc:localhost", Fold::Never).await;
}

/// The same counts whether the counters were folded after every step, partly, or never.
pub async fn notification_counts_survive_folding(store: &dyn Storage) {
    counts_scenario(store, "!pf:localhost", Fold::All).await;
    counts_scenario(store, "!pp:localhost", Fold::OneRow).await;
    // Nothing is left to fold, and folding again changes nothing.
    assert_eq!(store.fold_unread_counts(100).await.unwrap(), 0);
}

/// When the scenario folds the pending notification rows into the counters.
#[derive(Clone, Copy)]
enum Fold {
    Never,
    /// Everything, after each step.
    All,
    /// One row after each step, so that counters and pending rows mix.
    OneRow,
}

impl Fold {
    async fn settle(self, store: &dyn Storage) {
        match self {
            Fold::Never => {}
            Fold::All => while store.fold_unread_counts(2).await.unwrap() > 0 {},
            Fold::OneRow => {
                store.fold_unread_counts(1).await.unwrap();
            }
        }
    }
}

async fn counts_scenario(store: &dyn Storage, room_id: &str, fold: Fold) {
    let mut r = TestRoom::create(store, room_id, "@alice:localhost", &room_id[1..3]).await;
    r.member(store, BOB, BOB, "join").await;
    fold.settle(store).await;
    let bob = user(BOB);
    let none = RoomNotificationCounts::default();
    assert_eq!(
        store.notification_counts(&bob, &r.room_id).await.unwrap(),
        none
    );

    let first = notify(&mut r, store, action(false, None)).await;
    fold.settle(store).await;
    let mention = notify(&mut r, store, action(true, None)).await;
    fold.settle(store).await;
    notify(&mut r, store, Vec::new()).await;
    fold.settle(store).await;
    let threaded = notify(&mut r, store, action(false, Some("$root"))).await;
    fold.settle(store).await;
    let got = store.notification_counts(&bob, &r.room_id).await.unwrap();
    assert_eq!(got.main, counts(2, 1));
    assert_eq!(got.threads, vec![("$root".to_owned(), counts(1, 0))]);
    assert_eq!(got.total(), counts(3, 1));
    assert_eq!(
        store.rooms_with_unread_notifications(&bob).await.unwrap(),
        1
    );
    // Many rooms at once, in the order asked; a room without counts has none.
    let other_id = room_id.replacen(':', "2:", 1);
    let other_tag = format!("{}2", &room_id[1..3]);
    let other = TestRoom::create(store, &other_id, "@alice:localhost", &other_tag).await;
    let asked = [
        other.room_id.clone(),
        r.room_id.clone(),
        other.room_id.clone(),
    ];
    let many = store.notification_counts_in(&bob, &asked).await.unwrap();
    assert_eq!(many, [none.clone(), got.clone(), none.clone()]);
    assert!(store
        .notification_counts_in(&bob, &[])
        .await
        .unwrap()
        .is_empty());

    // A main-timeline receipt resets the main timeline only.
    read_up_to(store, &r, "m.read", Some("main"), &first).await;
    fold.settle(store).await;
    let got = store.notification_counts(&bob, &r.room_id).await.unwrap();
    assert_eq!(got.main, counts(1, 1));
    assert_eq!(got.threads.len(), 1);
    // A private unthreaded receipt covers everything before it.
    read_up_to(store, &r, "m.read.private", None, &mention).await;
    fold.settle(store).await;
    let got = store.notification_counts(&bob, &r.room_id).await.unwrap();
    assert_eq!(got.main, counts(0, 0));
    assert_eq!(got.threads, vec![("$root".to_owned(), counts(1, 0))]);
    read_up_to(store, &r, "m.read", Some("$root"), &threaded).await;
    fold.settle(store).await;
    assert_eq!(
        store.notification_counts(&bob, &r.room_id).await.unwrap(),
        none
    );
    assert_eq!(
        store.rooms_with_unread_notifications(&bob).await.unwrap(),
        0
    );

    // The list keeps read ones, marked; newest first, paged, highlights only on demand.
    let all = store.notifications(&bob, None, 10, false).await.unwrap();
    assert_eq!(all.next, None);
    let in_room = |n: &crate::NotificationRecord| n.room_id == r.room_id;
    let all: Vec<_> = all.records.into_iter().filter(in_room).collect();
    assert_eq!(all.len(), 3);
    assert_eq!(all[0].event_id.as_str(), threaded);
    assert!(all.iter().all(|n| n.read));
    assert_eq!(all[1].actions, r#"["notify"]"#);
    let page = store
        .notifications(&bob, Some(all[0].stream_pos), 1, false)
        .await
        .unwrap();
    assert_eq!(page.records[0].event_id.as_str(), mention);
    assert_eq!(page.next, Some(page.records[0].stream_pos));
    let highlights = store.notifications(&bob, None, 10, true).await.unwrap();
    let highlights: Vec<_> = highlights.records.into_iter().filter(in_room).collect();
    assert_eq!(highlights.len(), 1);
    assert!(highlights[0].highlight);

    // A redaction takes its target's notification away.
    let later = notify(&mut r, store, action(true, None)).await;
    fold.settle(store).await;
    assert_eq!(
        store
            .notification_counts(&bob, &r.room_id)
            .await
            .unwrap()
            .main,
        counts(1, 1)
    );
    let redaction = r.next_pdu("@alice:localhost", "m.room.redaction", None, json!({}));
    let mut new_event = r.new_event(redaction);
    new_event.redaction = Some((
        event(&later),
        serde_json::value::to_raw_value(&json!({})).unwrap(),
    ));
    r.append(store, new_event).await;
    fold.settle(store).await;
    assert_eq!(
        store.notification_counts(&bob, &r.room_id).await.unwrap(),
        none
    );

    // A profile change (join to join) keeps what is unread; leaving and joining again clears it.
    notify(&mut r, store, action(false, None)).await;
    fold.settle(store).await;
    r.member(store, BOB, BOB, "join").await;
    fold.settle(store).await;
    assert_eq!(
        store
            .notification_counts(&bob, &r.room_id)
            .await
            .unwrap()
            .main,
        counts(1, 0)
    );
    r.member(store, BOB, BOB, "leave").await;
    fold.settle(store).await;
    assert_eq!(
        store.rooms_with_unread_notifications(&bob).await.unwrap(),
        0
    );
    r.member(store, BOB, BOB, "join").await;
    fold.settle(store).await;
    assert_eq!(
        store.notification_counts(&bob, &r.room_id).await.unwrap(),
        none
    );
}

/// Many users notified by one event, each with their own actions, counted and listed apart.
pub async fn notifications_of_many_members(store: &dyn Storage) {
    let mut r = TestRoom::create(store, "!pm:localhost", "@alice:localhost", "pm").await;
    let members: Vec<String> = (0..30).map(|i| format!("@m{i}:localhost")).collect();
    for m in &members {
        r.member(store, m, m, "join").await;
    }
    let actions: Vec<NewPushAction> = members
        .iter()
        .enumerate()
        .map(|(i, m)| NewPushAction {
            user_id: user(m),
            actions: if i % 3 == 0 {
                r#"["notify",{"set_tweak":"highlight"}]"#.into()
            } else {
                r#"["notify"]"#.into()
            },
            highlight: i % 3 == 0,
            thread_id: None,
            queue: false,
        })
        .collect();
    let id = notify(&mut r, store, actions.clone()).await;
    // The second one is counted before the fold, the first after it.
    store.fold_unread_counts(10).await.unwrap();
    notify(&mut r, store, actions).await;
    for (i, m) in members.iter().enumerate() {
        let got = store
            .notification_counts(&user(m), &r.room_id)
            .await
            .unwrap();
        assert_eq!(got.main, counts(2, 2 * u64::from(i % 3 == 0)), "{m}");
        assert_eq!(
            store
                .rooms_with_unread_notifications(&user(m))
                .await
                .unwrap(),
            1
        );
        let page = store.notifications(&user(m), None, 5, false).await.unwrap();
        assert_eq!(page.records.len(), 2, "{m}");
        assert_eq!(page.records[1].event_id.as_str(), id);
        assert_eq!(page.records[1].highlight, i % 3 == 0);
    }
    // Alice sent it and is not notified.
    let alice = user("@alice:localhost");
    assert_eq!(
        store.notification_counts(&alice, &r.room_id).await.unwrap(),
        RoomNotificationCounts::default()
    );
    assert!(store
        .notifications(&alice, None, 5, false)
        .await
        .unwrap()
        .records
        .is_empty());
}

pub async fn pushers_and_their_queues(store: &dyn Storage) {
    for u in ["@bob:localhost", "@carol:localhost"] {
        store.create_user(new_user(u, None)).await.unwrap();
    }
    for (u, d, t) in [
        (BOB, "PHONE", "t1"),
        (BOB, "LAPTOP", "t2"),
        ("@carol:localhost", "C", "t3"),
    ] {
        store.create_session(session(u, d, t, None)).await.unwrap();
    }
    let bob = user(BOB);
    let phone = store
        .set_pusher(pusher("PHONE", BOB, "key1"), false)
        .await
        .unwrap();
    let mut email = pusher("LAPTOP", BOB, "bob@example.org");
    email.kind = "email".into();
    email.app_id = "m.email".into();
    let email = store.set_pusher(email, false).await.unwrap();
    // Updating keeps the ID.
    let mut renamed = pusher("PHONE", BOB, "key1");
    renamed.device_display_name = "Renamed".into();
    assert_eq!(store.set_pusher(renamed, false).await.unwrap(), phone);
    let listed = store.pushers(&bob).await.unwrap();
    assert_eq!(listed.len(), 2);
    assert_eq!(listed[0].device_display_name, "Renamed");
    assert_eq!(store.pusher(phone).await.unwrap().unwrap().pushkey, "key1");

    // Every pusher (HTTP and e-mail) gets queue rows, in the event's transaction.
    let mut r = TestRoom::create(store, "!pq:localhost", "@alice:localhost", "pq").await;
    r.member(store, BOB, BOB, "join").await;
    let first = notify(&mut r, store, action(false, None)).await;
    let second = notify(&mut r, store, action(true, None)).await;
    assert_eq!(
        store.pushers_with_queue().await.unwrap(),
        vec![phone, email]
    );
    assert_eq!(store.queued_pushes(email, 10).await.unwrap().len(), 2);
    let queued = store.queued_pushes(phone, 10).await.unwrap();
    let ids: Vec<&str> = queued.iter().map(|q| q.event_id.as_str()).collect();
    assert_eq!(ids, [first.as_str(), second.as_str()]);
    store
        .delete_queued_push(phone, queued[0].stream_pos)
        .await
        .unwrap();
    assert_eq!(store.queued_pushes(phone, 10).await.unwrap().len(), 1);

    // Another user taking the pushkey removes Bob's, unless appended.
    let mut carols = pusher("C", "@carol:localhost", "key1");
    store.set_pusher(carols.clone(), true).await.unwrap();
    assert!(store.pusher(phone).await.unwrap().is_some());
    carols.lang = "fr".into();
    store.set_pusher(carols, false).await.unwrap();
    assert!(store.pusher(phone).await.unwrap().is_none());
    assert_eq!(store.pushers_with_queue().await.unwrap(), vec![email]);

    // Deleting: by key, by the device going, and all but one device's.
    let phone = store
        .set_pusher(pusher("PHONE", BOB, "key2"), false)
        .await
        .unwrap();
    assert!(store
        .delete_pusher(&bob, "org.example.app", "key2")
        .await
        .unwrap());
    assert!(!store
        .delete_pusher(&bob, "org.example.app", "key2")
        .await
        .unwrap());
    assert!(store.pusher(phone).await.unwrap().is_none());
    store
        .set_pusher(pusher("PHONE", BOB, "key3"), false)
        .await
        .unwrap();
    store
        .delete_devices(&bob, &[device("PHONE")])
        .await
        .unwrap();
    let left: Vec<String> = store
        .pushers(&bob)
        .await
        .unwrap()
        .into_iter()
        .map(|p| p.device_id)
        .collect();
    assert_eq!(left, ["LAPTOP"]);
    store
        .set_pusher(pusher("LAPTOP", BOB, "key4"), false)
        .await
        .unwrap();
    let id = store
        .set_pusher(pusher("LAPTOP", BOB, "key5"), false)
        .await
        .unwrap();
    assert!(store
        .delete_pushers_except(&bob, "LAPTOP")
        .await
        .unwrap()
        .is_empty());
    store.delete_pusher_by_id(id).await.unwrap();
    assert_eq!(store.pushers(&bob).await.unwrap().len(), 2);
    assert_eq!(
        store
            .delete_pushers_except(&bob, "OTHER")
            .await
            .unwrap()
            .len(),
        2
    );
    assert!(store.pushers(&bob).await.unwrap().is_empty());
}
