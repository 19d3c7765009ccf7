//! Event relationships and threads over raw HTTP (spec: Client-Server API, "Event
//! relationships", "Threading"): `/relations` with each filter and pagination both ways,
//! `/threads` for everyone and for participants, the bundled aggregations of `/messages`,
//! `/event`, `/context` and `/sync`, a redacted reply leaving, readers who may not see, and
//! replies arriving over federation or through backfill.

use myelin_testing::http::{assert_err, assert_ok, register, room_path, C};
use myelin_testing::{enc, Account, StatusCode, TestServer};
use serde_json::{json, Value};

/// `/_matrix/client/v1/rooms/{roomId}/{rest}`.
fn v1(room: &str, rest: &str) -> String {
    format!("/_matrix/client/v1/rooms/{}/{rest}", enc(room))
}

/// Sends an event of `kind` and returns its ID.
async fn send(
    server: &TestServer,
    who: &Account,
    room: &str,
    kind: &str,
    content: Value,
) -> String {
    let txn = format!("t{}", rand_suffix());
    let (status, body) = server
        .put(
            &room_path(room, &format!("send/{kind}/{txn}")),
            who.token(),
            &content,
        )
        .await;
    assert_eq!(status, StatusCode::OK, "send {kind}: {body}");
    body["event_id"].as_str().expect("event_id").to_owned()
}

/// A transaction ID no other send of the test uses.
fn rand_suffix() -> u64 {
    use std::sync::atomic::{AtomicU64, Ordering};
    static NEXT: AtomicU64 = AtomicU64::new(0);
    NEXT.fetch_add(1, Ordering::SeqCst)
}

fn reply(root: &str, body: &str) -> Value {
    json!({ "msgtype": "m.text", "body": body,
            "m.relates_to": { "rel_type": "m.thread", "event_id": root,
                              "is_falling_back": true, "m.in_reply_to": { "event_id": root } } })
}

async fn get_ok(server: &TestServer, who: &Account, path: &str) -> Value {
    let resp = server.get(path, who.token()).await;
    assert_ok(&resp, path);
    resp.1
}

fn ids(body: &Value) -> Vec<String> {
    body["chunk"]
        .as_array()
        .expect("chunk")
        .iter()
        .map(|e| e["event_id"].as_str().expect("event_id").to_owned())
        .collect()
}

/// The `m.thread` aggregation of the event `id` in a list of events.
fn thread_of<'a>(events: &'a [Value], id: &str) -> &'a Value {
    let event = events
        .iter()
        .find(|e| e["event_id"] == id)
        .unwrap_or_else(|| panic!("{id} not among {events:?}"));
    &event["unsigned"]["m.relations"]["m.thread"]
}

struct Room {
    id: String,
    alice: Account,
    bob: Account,
    carol: Account,
    root: String,
    /// Alice's, Bob's and Alice's replies in the thread, oldest first.
    replies: [String; 3],
}

/// A public room of Alice's with Bob and Carol, and a thread with replies by Alice and Bob.
async fn room_with_thread(server: &TestServer) -> Room {
    let (alice, bob, carol) = (
        register(server, "alice").await,
        register(server, "bob").await,
        register(server, "carol").await,
    );
    let id = server
        .create_room(&alice.access_token, &json!({ "preset": "public_chat" }))
        .await;
    server.join(&bob.access_token, &id).await;
    server.join(&carol.access_token, &id).await;
    let root = server
        .send_message(&alice.access_token, &id, "root", "root")
        .await;
    let r1 = send(server, &alice, &id, "m.room.message", reply(&root, "one")).await;
    let r2 = send(server, &bob, &id, "m.room.message", reply(&root, "two")).await;
    let r3 = send(server, &alice, &id, "m.room.message", reply(&root, "three")).await;
    Room {
        id,
        alice,
        bob,
        carol,
        root,
        replies: [r1, r2, r3],
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn threads_list_and_summarise_for_each_user() {
    let server = TestServer::start().await;
    let room = room_with_thread(&server).await;
    let [_, _, r3] = &room.replies;

    let all = get_ok(&server, &room.carol, &v1(&room.id, "threads?include=all")).await;
    assert_eq!(ids(&all), [room.root.as_str()]);
    let chunk = all["chunk"].as_array().unwrap();
    let thread = thread_of(chunk, &room.root);
    assert_eq!(thread["count"], 3, "{thread}");
    assert_eq!(thread["latest_event"]["event_id"], r3.as_str());
    assert_eq!(thread["latest_event"]["content"]["body"], "three");
    assert_eq!(thread["current_user_participated"], false);
    let participated = v1(&room.id, "threads?include=participated");
    assert!(ids(&get_ok(&server, &room.carol, &participated).await).is_empty());
    let bobs = get_ok(&server, &room.bob, &participated).await;
    assert_eq!(ids(&bobs), [room.root.as_str()]);
    assert_eq!(
        thread_of(bobs["chunk"].as_array().unwrap(), &room.root)["current_user_participated"],
        true
    );

    // A second thread, more recently active, comes first; pages of one.
    let other = server
        .send_message(&room.carol.access_token, &room.id, "other", "other")
        .await;
    send(
        &server,
        &room.carol,
        &room.id,
        "m.room.message",
        reply(&other, "x"),
    )
    .await;
    let first = get_ok(&server, &room.bob, &v1(&room.id, "threads?limit=1")).await;
    assert_eq!(ids(&first), [other.as_str()]);
    let next = first["next_batch"].as_str().expect("next_batch");
    let second = get_ok(
        &server,
        &room.bob,
        &v1(&room.id, &format!("threads?limit=1&from={}", enc(next))),
    )
    .await;
    assert_eq!(ids(&second), [room.root.as_str()]);
    assert!(second.get("next_batch").is_none(), "{second}");

    // The root's summary reaches /messages, /event, /context and /sync as well.
    let messages = get_ok(
        &server,
        &room.carol,
        &room_path(&room.id, "messages?dir=b&limit=50"),
    )
    .await;
    assert_eq!(
        thread_of(messages["chunk"].as_array().unwrap(), &room.root)["count"],
        3
    );
    let event = get_ok(
        &server,
        &room.carol,
        &room_path(&room.id, &format!("event/{}", enc(&room.root))),
    )
    .await;
    assert_eq!(
        event["unsigned"]["m.relations"]["m.thread"]["latest_event"]["event_id"],
        r3.as_str()
    );
    let context = get_ok(
        &server,
        &room.carol,
        &room_path(&room.id, &format!("context/{}?limit=2", enc(&room.root))),
    )
    .await;
    assert_eq!(
        context["event"]["unsigned"]["m.relations"]["m.thread"]["count"],
        3
    );
    let filter = enc(&json!({ "room": { "timeline": { "limit": 50 } } }).to_string());
    let sync = get_ok(&server, &room.bob, &format!("{C}/sync?filter={filter}")).await;
    let timeline = sync["rooms"]["join"][&room.id]["timeline"]["events"]
        .as_array()
        .expect("timeline");
    assert_eq!(
        thread_of(timeline, &room.root)["current_user_participated"],
        true
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn relations_filter_paginate_and_lose_redacted_replies() {
    let server = TestServer::start().await;
    let room = room_with_thread(&server).await;
    let [r1, r2, r3] = room.replies.clone();
    let like = json!({ "m.relates_to": { "rel_type": "m.annotation", "event_id": room.root, "key": "👍" } });
    let reaction = send(&server, &room.bob, &room.id, "m.reaction", like).await;
    let nested =
        json!({ "m.relates_to": { "rel_type": "m.annotation", "event_id": r1, "key": "👀" } });
    let deep = send(&server, &room.carol, &room.id, "m.reaction", nested).await;
    let relations = |rest: &str| v1(&room.id, &format!("relations/{}{rest}", enc(&room.root)));

    let all = get_ok(&server, &room.carol, &relations("")).await;
    assert_eq!(
        ids(&all),
        [reaction.clone(), r3.clone(), r2.clone(), r1.clone()]
    );
    assert!(all.get("recursion_depth").is_none());
    let threads = get_ok(&server, &room.carol, &relations("/m.thread")).await;
    assert_eq!(ids(&threads), [r3.clone(), r2.clone(), r1.clone()]);
    let typed = get_ok(&server, &room.carol, &relations("/m.thread/m.room.message")).await;
    assert_eq!(ids(&typed), ids(&threads));
    let reactions = get_ok(&server, &room.carol, &relations("/m.annotation/m.reaction")).await;
    assert_eq!(ids(&reactions), [reaction.as_str()]);
    assert!(
        ids(&get_ok(&server, &room.carol, &relations("/m.thread/m.reaction")).await).is_empty()
    );
    let recursive = get_ok(&server, &room.carol, &relations("?recurse=true")).await;
    assert_eq!(recursive["recursion_depth"], 3);
    assert_eq!(
        ids(&recursive),
        [deep, reaction.clone(), r3.clone(), r2.clone(), r1.clone()]
    );

    // Backward in pages of two, then forward.
    let page1 = get_ok(&server, &room.carol, &relations("/m.thread?limit=2")).await;
    assert_eq!(ids(&page1), [r3.clone(), r2.clone()]);
    assert!(page1.get("prev_batch").is_none());
    let next = page1["next_batch"].as_str().expect("next_batch").to_owned();
    let page2 = get_ok(
        &server,
        &room.carol,
        &relations(&format!("/m.thread?limit=2&from={}", enc(&next))),
    )
    .await;
    assert_eq!(ids(&page2), [r1.as_str()]);
    assert_eq!(page2["prev_batch"], next.as_str());
    assert!(page2.get("next_batch").is_none(), "{page2}");
    let fwd1 = get_ok(&server, &room.carol, &relations("/m.thread?dir=f&limit=2")).await;
    assert_eq!(ids(&fwd1), [r1.clone(), r2.clone()]);
    let next = fwd1["next_batch"].as_str().expect("next_batch");
    let fwd2 = get_ok(
        &server,
        &room.carol,
        &relations(&format!("/m.thread?dir=f&limit=2&from={}", enc(next))),
    )
    .await;
    assert_eq!(ids(&fwd2), [r3.as_str()]);

    // A redacted reply leaves the relations and the thread summary.
    let (status, body) = server
        .put(
            &room_path(&room.id, &format!("redact/{}/red1", enc(&r3))),
            room.alice.token(),
            &json!({}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(
        ids(&get_ok(&server, &room.carol, &relations("/m.thread")).await),
        [r2.clone(), r1]
    );
    let listed = get_ok(&server, &room.carol, &v1(&room.id, "threads")).await;
    let thread = thread_of(listed["chunk"].as_array().unwrap(), &room.root);
    assert_eq!(
        (
            thread["count"].clone(),
            thread["latest_event"]["event_id"].clone()
        ),
        (json!(2), json!(r2))
    );

    // Bad parameters.
    for bad in [
        "?dir=sideways",
        "?limit=many",
        "?from=nonsense",
        "?recurse=maybe",
    ] {
        assert_err(
            &server.get(&relations(bad), room.carol.token()).await,
            400,
            "M_INVALID_PARAM",
            bad,
        );
    }
    for bad in [
        "threads?include=some",
        "threads?limit=0",
        "threads?from=nonsense",
    ] {
        assert_err(
            &server.get(&v1(&room.id, bad), room.carol.token()).await,
            400,
            "M_INVALID_PARAM",
            bad,
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_edit_is_bundled_with_the_original() {
    let server = TestServer::start().await;
    let room = room_with_thread(&server).await;
    let original = server
        .send_message(&room.alice.access_token, &room.id, "orig", "helo")
        .await;
    let edit = json!({ "msgtype": "m.text", "body": "* hello",
                       "m.new_content": { "msgtype": "m.text", "body": "hello" },
                       "m.relates_to": { "rel_type": "m.replace", "event_id": original } });
    let edit_id = send(&server, &room.alice, &room.id, "m.room.message", edit).await;
    // Bob may not edit Alice's message.
    let hijack = json!({ "msgtype": "m.text", "body": "* pwned",
                         "m.new_content": { "msgtype": "m.text", "body": "pwned" },
                         "m.relates_to": { "rel_type": "m.replace", "event_id": original } });
    send(&server, &room.bob, &room.id, "m.room.message", hijack).await;

    let event = get_ok(
        &server,
        &room.carol,
        &room_path(&room.id, &format!("event/{}", enc(&original))),
    )
    .await;
    let replace = &event["unsigned"]["m.relations"]["m.replace"];
    assert_eq!(replace["event_id"], edit_id.as_str(), "{event}");
    assert_eq!(replace["content"]["m.new_content"]["body"], "hello");
    assert_eq!(replace["sender"], room.alice.user_id.as_str());
    let messages = get_ok(
        &server,
        &room.carol,
        &room_path(&room.id, "messages?dir=b&limit=5"),
    )
    .await;
    let found = messages["chunk"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["event_id"] == original.as_str())
        .expect("original");
    assert_eq!(
        found["unsigned"]["m.relations"]["m.replace"]["event_id"],
        edit_id.as_str()
    );
    let edits = get_ok(
        &server,
        &room.carol,
        &v1(&room.id, &format!("relations/{}/m.replace", enc(&original))),
    )
    .await;
    assert_eq!(
        edits["chunk"].as_array().unwrap().len(),
        2,
        "/relations lists every m.replace"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn who_may_not_see_the_history_gets_nothing() {
    let server = TestServer::start().await;
    let room = room_with_thread(&server).await;
    let eve = register(&server, "eve").await;
    let relations = v1(&room.id, &format!("relations/{}", enc(&room.root)));
    assert_err(
        &server.get(&relations, eve.token()).await,
        403,
        "M_FORBIDDEN",
        "a stranger's /relations",
    );
    assert_err(
        &server.get(&v1(&room.id, "threads"), eve.token()).await,
        403,
        "M_FORBIDDEN",
        "a stranger's /threads",
    );

    // Under `joined` visibility, Dave sees nothing from before he joined.
    let (status, body) = server
        .put(
            &room_path(&room.id, "state/m.room.history_visibility"),
            room.alice.token(),
            &json!({ "history_visibility": "joined" }),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let hidden_root = server
        .send_message(&room.alice.access_token, &room.id, "hidden", "hidden")
        .await;
    send(
        &server,
        &room.alice,
        &room.id,
        "m.room.message",
        reply(&hidden_root, "hidden reply"),
    )
    .await;
    let dave = register(&server, "dave").await;
    server.join(&dave.access_token, &room.id).await;
    let hidden = v1(&room.id, &format!("relations/{}", enc(&hidden_root)));
    assert_err(
        &server.get(&hidden, dave.token()).await,
        404,
        "M_NOT_FOUND",
        "an unseen parent",
    );
    // The first thread was sent under `shared`: a later member reads it.
    let shared = get_ok(&server, &dave, &relations).await;
    assert_eq!(ids(&shared).len(), 3, "{shared}");
    let threads = get_ok(&server, &dave, &v1(&room.id, "threads")).await;
    assert_eq!(
        ids(&threads),
        [room.root.as_str()],
        "only the thread he may see"
    );
    let (status, _) = server.get(&hidden, room.carol.token()).await;
    assert_eq!(status, StatusCode::OK, "a member then sees it");
}

/// Replies from other servers are indexed as they arrive, and so is history backfilled from
/// them: both servers hold the same thread, with a reply from before the second one joined.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replies_over_federation_and_backfill_join_the_thread() {
    let a = TestServer::start_federating().await;
    let b = TestServer::start_federating().await;
    let alice = register(&a, "alice").await;
    let bob = register(&b, "bob").await;
    let room = a
        .create_room(&alice.access_token, &json!({ "preset": "public_chat" }))
        .await;
    let root = a
        .send_message(&alice.access_token, &room, "root", "root")
        .await;
    let early = send(
        &a,
        &alice,
        &room,
        "m.room.message",
        reply(&root, "before b"),
    )
    .await;
    let join = format!("{C}/join/{}?via={}", enc(&room), enc(a.server_name()));
    assert_ok(
        &b.post(&join, bob.token(), &json!({})).await,
        "bob joins over federation",
    );
    // Paging back on B fetches the history from before its join from A.
    let back = get_ok(&b, &bob, &room_path(&room, "messages?dir=b&limit=50")).await;
    assert!(ids(&back).contains(&early), "{back}");
    let remote = send(&b, &bob, &room, "m.room.message", reply(&root, "from b")).await;
    let local = send(&a, &alice, &room, "m.room.message", reply(&root, "from a")).await;

    let mut expected = vec![early, remote, local];
    expected.sort();
    let thread = v1(&room, &format!("relations/{}/m.thread", enc(&root)));
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    loop {
        let mut on_a = ids(&get_ok(&a, &alice, &thread).await);
        let mut on_b = ids(&get_ok(&b, &bob, &thread).await);
        on_a.sort();
        on_b.sort();
        if on_a == expected && on_b == expected {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "A: {on_a:?} B: {on_b:?}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    let listed = get_ok(&b, &bob, &v1(&room, "threads?include=participated")).await;
    let summary = thread_of(listed["chunk"].as_array().unwrap(), &root);
    let count_and_mine = (
        summary["count"].clone(),
        summary["current_user_participated"].clone(),
    );
    assert_eq!(count_and_mine, (json!(3), json!(true)));
}
