//! Sliding sync through matrix-sdk-ui, as Element X uses it: found in `/versions`, the room
//! list (`SyncService` / `RoomListService`) in bump order, a room's `Timeline` going live, and
//! encrypted messages with another matrix-sdk client decrypted both ways.

use std::{
    sync::Arc,
    time::{Duration, Instant},
};

use futures_util::{pin_mut, Stream, StreamExt};
use matrix_sdk::{
    config::SyncSettings,
    ruma::{
        api::client::room::create_room, events::room::message::RoomMessageEventContent, serde::Raw,
        OwnedRoomId, OwnedUserId, RoomId,
    },
    sliding_sync::VersionBuilder,
    Client, RoomState,
};
use matrix_sdk_ui::{
    eyeball_im::{Vector, VectorDiff},
    room_list_service::{filters::new_filter_non_left, RoomListItem},
    sync_service::SyncService,
    timeline::{RoomExt, Timeline, TimelineItem},
};
use myelin_testing::{http::PW, TestServer};
use serde_json::json;
use tokio::sync::broadcast::error::RecvError;

/// How long any one wait lasts before the test fails.
const WAIT: Duration = Duration::from_secs(30);

/// Logs `name` in with a fresh client that must find sliding sync in `/versions`.
pub(crate) async fn sliding_client(server: &TestServer, name: &str) -> Client {
    let client = Client::builder()
        .homeserver_url(server.base_url())
        .sliding_sync_version_builder(VersionBuilder::DiscoverNative)
        .build()
        .await
        .expect("the server advertises simplified sliding sync");
    client
        .matrix_auth()
        .login_username(name, PW)
        .send()
        .await
        .expect("log in");
    client
}

/// Applies room list updates until the list holds exactly `want`, in that order.
async fn wait_for_order(
    entries: &mut (impl Stream<Item = Vec<VectorDiff<RoomListItem>>> + Unpin),
    list: &mut Vector<RoomListItem>,
    want: &[&str],
) {
    let deadline = Instant::now() + WAIT;
    loop {
        let ids: Vec<String> = list.iter().map(|r| r.room_id().to_string()).collect();
        if ids == want {
            return;
        }
        let left = deadline.saturating_duration_since(Instant::now());
        match tokio::time::timeout(left, entries.next()).await {
            Ok(Some(diffs)) => diffs.into_iter().for_each(|d| d.apply(list)),
            Ok(None) => panic!("the room list stream ended at {ids:?}"),
            Err(_) => panic!("room list: {ids:?}, never {want:?}"),
        }
    }
}

/// Applies timeline updates until `done` holds for its items; panics after [`WAIT`] with what
/// the timeline shows (an undecryptable event shows as such).
pub(crate) async fn wait_for_timeline(
    timeline: &Timeline,
    what: &str,
    done: impl Fn(&Vector<Arc<TimelineItem>>) -> bool,
) {
    let (mut items, stream) = timeline.subscribe().await;
    pin_mut!(stream);
    let wait = async {
        while !done(&items) {
            match stream.next().await {
                Some(diffs) => diffs.into_iter().for_each(|d| d.apply(&mut items)),
                None => panic!("the timeline stream ended"),
            }
        }
    };
    if tokio::time::timeout(WAIT, wait).await.is_err() {
        let shown: Vec<String> = items
            .iter()
            .filter_map(|i| i.as_event().map(|e| format!("{:?}", e.content())))
            .collect();
        panic!("timeline never: {what}; it shows {shown:#?}");
    }
}

/// Waits until the timeline shows a message with this body.
async fn wait_for_message(timeline: &Timeline, body: &str) {
    wait_for_timeline(timeline, &format!("a message {body:?}"), |items| {
        items.iter().any(|item| {
            item.as_event()
                .and_then(|e| e.content().as_message().map(|m| m.body() == body))
                .unwrap_or(false)
        })
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_room_list_follows_bumps_and_a_timeline_goes_live() {
    let server = TestServer::start().await;
    let alice = server.register("alice", PW).await;
    let token = &alice.access_token;
    let mut rooms = Vec::new();
    for name in ["first", "second", "third"] {
        let body = json!({ "name": name, "preset": "private_chat" });
        let room = server.create_room(token, &body).await;
        let text = format!("hello {name}");
        server
            .send_message(token, &room, &format!("t-{name}"), &text)
            .await;
        rooms.push(room);
    }
    server
        .send_message(token, &rooms[0], "t-bump", "bump first")
        .await;

    let client = sliding_client(&server, "alice").await;
    let sync = SyncService::builder(client.clone())
        .build()
        .await
        .expect("sync service");
    sync.start().await;
    let room_list = sync.room_list_service();
    let all = room_list.all_rooms().await.expect("all rooms");
    let (entries, controller) = all.entries_with_dynamic_adapters(10);
    controller.set_filter(Box::new(new_filter_non_left()));
    pin_mut!(entries);
    let mut list = Vector::new();
    wait_for_order(&mut entries, &mut list, &[&rooms[0], &rooms[2], &rooms[1]]).await;

    // Opening a room subscribes to it (a longer timeline) and builds its timeline.
    let second = RoomId::parse(&rooms[1]).expect("room ID");
    room_list.subscribe_to_rooms(&[&second]).await;
    let room = room_list.room(&second).expect("the room is known");
    let timeline = room.timeline().await.expect("timeline");
    wait_for_message(&timeline, "hello second").await;

    // A message from alice's other device shows live and bumps the room to the top.
    server
        .send_message(token, &rooms[1], "t-live", "live")
        .await;
    wait_for_message(&timeline, "live").await;
    wait_for_order(&mut entries, &mut list, &[&rooms[1], &rooms[0], &rooms[2]]).await;
    sync.stop().await;
}

/// `creator` makes an encrypted room and invites `invitee`.
async fn encrypted_room(creator: &Client, invitee: &OwnedUserId) -> OwnedRoomId {
    let mut request = create_room::v3::Request::new();
    let encryption = json!({
        "type": "m.room.encryption",
        "state_key": "",
        "content": { "algorithm": "m.megolm.v1.aes-sha2" },
    });
    request.initial_state = vec![Raw::new(&encryption).expect("raw").cast_unchecked()];
    request.invite = vec![invitee.clone()];
    let room = creator.create_room(request).await.expect("create room");
    room.room_id().to_owned()
}

/// Waits until `check` holds for `client`, looking again after each sync response it processes
/// (subscribed before the first look, so that none is missed).
async fn wait_until(client: &Client, what: &str, mut check: impl AsyncFnMut() -> bool) {
    let mut updates = client.subscribe_to_all_room_updates();
    let wait = async {
        while !check().await {
            match updates.recv().await {
                Ok(_) | Err(RecvError::Lagged(_)) => {}
                Err(RecvError::Closed) => panic!("the client stopped syncing: {what}"),
            }
        }
    };
    tokio::time::timeout(WAIT, wait)
        .await
        .unwrap_or_else(|_| panic!("never: {what}"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn encrypted_messages_decrypt_both_ways() {
    let server = TestServer::start().await;
    server.register("alice", PW).await;
    server.register("bob", PW).await;

    // Alice syncs the Element X way: room list and encryption over sliding sync.
    let alice = sliding_client(&server, "alice").await;
    let alice_id = alice.user_id().expect("alice").to_owned();
    let sync = SyncService::builder(alice.clone())
        .build()
        .await
        .expect("sync service");
    sync.start().await;

    // Bob is a matrix-sdk client on `/sync`.
    let bob = Client::builder()
        .homeserver_url(server.base_url())
        .build()
        .await
        .expect("bob's client");
    bob.matrix_auth()
        .login_username("bob", PW)
        .send()
        .await
        .expect("bob logs in");
    bob.sync_once(SyncSettings::default())
        .await
        .expect("bob's first sync");
    let bob_sync = tokio::spawn({
        let bob = bob.clone();
        async move {
            let settings = SyncSettings::default().timeout(Duration::from_secs(2));
            let _ = bob.sync(settings).await;
        }
    });

    let room_id = encrypted_room(&bob, &alice_id).await;
    wait_until(&alice, "alice sees the invite", async || {
        alice
            .get_room(&room_id)
            .is_some_and(|r| r.state() == RoomState::Invited)
    })
    .await;
    alice.join_room_by_id(&room_id).await.expect("alice joins");
    wait_until(&bob, "bob sees alice join", async || {
        let Some(room) = bob.get_room(&room_id) else {
            return false;
        };
        room.get_member_no_sync(&alice_id)
            .await
            .ok()
            .flatten()
            .is_some_and(|m| {
                m.membership() == &matrix_sdk::ruma::events::room::member::MembershipState::Join
            })
    })
    .await;

    let bob_room = bob.get_room(&room_id).expect("bob's room");
    bob_room
        .send(RoomMessageEventContent::text_plain("for alice only"))
        .await
        .expect("bob sends an encrypted message");

    let alice_room = alice.get_room(&room_id).expect("alice's room");
    let timeline = alice_room.timeline().await.expect("alice's timeline");
    wait_for_message(&timeline, "for alice only").await;

    // And back: alice's encrypted answer, sent over her sliding-sync session, decrypts for bob.
    let bob_timeline = bob_room.timeline().await.expect("bob's timeline");
    alice_room
        .send(RoomMessageEventContent::text_plain("for bob only"))
        .await
        .expect("alice sends an encrypted message");
    wait_for_message(&bob_timeline, "for bob only").await;
    sync.stop().await;
    bob_sync.abort();
}
