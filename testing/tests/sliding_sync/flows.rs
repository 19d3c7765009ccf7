//! Element X's everyday flows through matrix-sdk-ui over sliding sync: an invite appears in the
//! room list and is joined, a left room disappears, a timeline paginates back through 200
//! messages, and an edit, a reaction and a thread reply show on their messages.

use std::time::Duration;

use futures_util::{pin_mut, Stream, StreamExt};
use matrix_sdk::ruma::RoomId;
use matrix_sdk_ui::{
    eyeball_im::{Vector, VectorDiff},
    room_list_service::{filters::new_filter_non_left, RoomListItem},
    sync_service::SyncService,
    timeline::{RoomExt, TimelineItem},
};
use myelin_testing::http::{room_path, PW};
use myelin_testing::{StatusCode, TestServer};
use serde_json::json;

use super::sdk::{sliding_client, wait_for_timeline};

/// How long any one wait lasts before the test fails.
const WAIT: Duration = Duration::from_secs(30);

/// Applies room list updates until `done` holds for the list's room IDs.
async fn wait_for_list(
    entries: &mut (impl Stream<Item = Vec<VectorDiff<RoomListItem>>> + Unpin),
    list: &mut Vector<RoomListItem>,
    what: &str,
    done: impl Fn(&[String]) -> bool,
) {
    let wait = async {
        loop {
            let ids: Vec<String> = list.iter().map(|r| r.room_id().to_string()).collect();
            if done(&ids) {
                return;
            }
            match entries.next().await {
                Some(diffs) => diffs.into_iter().for_each(|d| d.apply(list)),
                None => panic!("the room list stream ended at {ids:?}"),
            }
        }
    };
    tokio::time::timeout(WAIT, wait)
        .await
        .unwrap_or_else(|_| panic!("room list never: {what}"));
}

fn bodies(items: &Vector<std::sync::Arc<TimelineItem>>) -> Vec<String> {
    items
        .iter()
        .filter_map(|i| {
            i.as_event()?
                .content()
                .as_message()
                .map(|m| m.body().to_owned())
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invites_leaves_pagination_edits_reactions_and_threads() {
    // 200 messages in a row: over the default send budget.
    let server = TestServer::start_with(|c| c.rate_limits.enabled = false).await;
    let alice = server.register("alice", PW).await;
    let bob = server.register("bob", PW).await;
    let (at, bt) = (&alice.access_token, &bob.access_token);

    // A room alice will leave, and a long room with an edit, a reaction and a thread.
    let leaving = server
        .create_room(at, &json!({ "name": "leaving", "preset": "private_chat" }))
        .await;
    let long = server
        .create_room(at, &json!({ "name": "long", "preset": "private_chat" }))
        .await;
    for i in 0..200 {
        server
            .send_message(at, &long, &format!("m{i}"), &format!("message {i}"))
            .await;
    }
    let original = server.send_message(at, &long, "orig", "typo").await;
    let send = |kind: &str, txn: &str, content: serde_json::Value| {
        let path = room_path(&long, &format!("send/{kind}/{txn}"));
        let (server, at) = (&server, at.clone());
        async move {
            let (status, body) = server.put(&path, Some(&at), &content).await;
            assert_eq!(status, StatusCode::OK, "{body}");
        }
    };
    send(
        "m.room.message",
        "edit",
        json!({
            "msgtype": "m.text", "body": "* fixed",
            "m.new_content": { "msgtype": "m.text", "body": "fixed" },
            "m.relates_to": { "rel_type": "m.replace", "event_id": original },
        }),
    )
    .await;
    send(
        "m.reaction",
        "react",
        json!({
            "m.relates_to": { "rel_type": "m.annotation", "event_id": original, "key": "👍" },
        }),
    )
    .await;
    send(
        "m.room.message",
        "thread",
        json!({
            "msgtype": "m.text", "body": "in the thread",
            "m.relates_to": { "rel_type": "m.thread", "event_id": original, "is_falling_back": true,
                              "m.in_reply_to": { "event_id": original } },
        }),
    )
    .await;

    let client = sliding_client(&server, "alice").await;
    let sync = SyncService::builder(client.clone())
        .build()
        .await
        .expect("sync service");
    sync.start().await;
    let room_list = sync.room_list_service();
    let all = room_list.all_rooms().await.expect("all rooms");
    let (entries, controller) = all.entries_with_dynamic_adapters(20);
    controller.set_filter(Box::new(new_filter_non_left()));
    pin_mut!(entries);
    let mut list = Vector::new();
    wait_for_list(&mut entries, &mut list, "both rooms", |ids| ids.len() == 2).await;

    // An invite from bob appears; alice joins it from the list.
    let invited = server
        .create_room(
            bt,
            &json!({ "name": "from bob", "invite": [alice.user_id] }),
        )
        .await;
    wait_for_list(&mut entries, &mut list, "the invite", |ids| {
        ids.contains(&invited)
    })
    .await;
    let invited_id = RoomId::parse(&invited).expect("room ID");
    room_list
        .room(&invited_id)
        .expect("invited room")
        .join()
        .await
        .expect("join");
    let (status, members) = server
        .get(&room_path(&invited, "joined_members"), Some(bt))
        .await;
    assert_eq!(status, StatusCode::OK, "{members}");
    assert!(members["joined"].get(&alice.user_id).is_some(), "{members}");

    // A room alice leaves disappears from the list.
    let (status, body) = server
        .post(&room_path(&leaving, "leave"), Some(at), &json!({}))
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    wait_for_list(&mut entries, &mut list, "the left room gone", |ids| {
        !ids.contains(&leaving)
    })
    .await;

    // The long room's timeline: the edit, the reaction and the thread show on the original,
    // and paginating back reaches the first of the 200 messages.
    let long_id = RoomId::parse(&long).expect("room ID");
    room_list.subscribe_to_rooms(&[&long_id]).await;
    let timeline = room_list
        .room(&long_id)
        .expect("long room")
        .timeline()
        .await
        .expect("timeline");
    wait_for_timeline(&timeline, "the edit and the reaction", |items| {
        items.iter().filter_map(|i| i.as_event()).any(|e| {
            e.event_id().is_some_and(|id| id.as_str() == original)
                && e.content()
                    .as_message()
                    .is_some_and(|m| m.body() == "fixed" && m.is_edited())
                && e.content()
                    .reactions()
                    .is_some_and(|r| r.contains_key("👍"))
        })
    })
    .await;
    wait_for_timeline(&timeline, "the thread reply, in its thread", |items| {
        items.iter().filter_map(|i| i.as_event()).any(|e| {
            e.content()
                .as_message()
                .is_some_and(|m| m.body() == "in the thread")
                && e.content()
                    .thread_root()
                    .is_some_and(|root| root.as_str() == original)
        })
    })
    .await;
    let mut reached_start = false;
    for _ in 0..40 {
        if timeline.paginate_backwards(50).await.expect("paginate") {
            reached_start = true;
            break;
        }
    }
    assert!(reached_start, "the start of the room was never reached");
    let all_bodies = bodies(&timeline.items().await);
    for i in [0, 99, 199] {
        assert!(
            all_bodies.contains(&format!("message {i}")),
            "message {i} missing"
        );
    }
    let numbered = all_bodies
        .iter()
        .filter(|b| b.starts_with("message "))
        .count();
    assert_eq!(numbered, 200, "each of the 200 messages once");
    sync.stop().await;
}
