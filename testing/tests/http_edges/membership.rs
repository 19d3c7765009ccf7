//! Membership: member lists (filtered and at past tokens), what non-members and former
//! members may see, kicks, bans, forgetting, knocking, and concurrent joins.

use myelin_testing::http::{assert_err, assert_ok, room_path, C, PW};
use myelin_testing::{enc, message_bodies, timeline, Account, StatusCode, TestServer};
use serde_json::{json, Value};

use crate::{messages, state_path};

#[tokio::test]
async fn members_with_membership_filters() {
    let s = TestServer::start().await;
    let alice = s.register("alice", PW).await;
    let bob = s.register("bob", PW).await;
    let carol = s.register("carol", PW).await;
    let dave = s.register("dave", PW).await;
    let room = s
        .create_room(&alice.access_token, &json!({ "preset": "public_chat" }))
        .await;
    s.join(&bob.access_token, &room).await;
    s.invite(&alice.access_token, &room, &carol.user_id).await;
    s.join(&dave.access_token, &room).await;
    s.leave(&dave.access_token, &room).await;

    let members = |query: &'static str| {
        let s = &s;
        let room = &room;
        let alice = &alice;
        async move {
            let (st, body) = s
                .get(&room_path(room, &format!("members{query}")), alice.token())
                .await;
            assert_eq!(st, StatusCode::OK, "/members{query}: {body}");
            let mut found: Vec<(String, String)> = body["chunk"]
                .as_array()
                .unwrap()
                .iter()
                .map(|e| {
                    assert_eq!(e["type"], "m.room.member");
                    (
                        e["state_key"].as_str().unwrap().to_owned(),
                        e["content"]["membership"].as_str().unwrap().to_owned(),
                    )
                })
                .collect();
            found.sort();
            found
        }
    };
    let pair = |a: &Account, m: &str| (a.user_id.clone(), m.to_owned());

    assert_eq!(
        members("").await,
        vec![
            pair(&alice, "join"),
            pair(&bob, "join"),
            pair(&carol, "invite"),
            pair(&dave, "leave")
        ]
    );
    assert_eq!(
        members("?membership=join").await,
        vec![pair(&alice, "join"), pair(&bob, "join")]
    );
    assert_eq!(
        members("?membership=invite").await,
        vec![pair(&carol, "invite")]
    );
    assert_eq!(
        members("?membership=leave").await,
        vec![pair(&dave, "leave")]
    );
    assert_eq!(
        members("?not_membership=join").await,
        vec![pair(&carol, "invite"), pair(&dave, "leave")]
    );

    let (st, joined) = s
        .get(&room_path(&room, "joined_members"), bob.token())
        .await;
    assert_eq!(st, StatusCode::OK, "{joined}");
    let mut joined_ids: Vec<&String> = joined["joined"]
        .as_object()
        .expect("joined map")
        .keys()
        .collect();
    joined_ids.sort();
    assert_eq!(joined_ids, vec![&alice.user_id, &bob.user_id], "{joined}");
}

#[tokio::test]
async fn members_at_a_past_token() {
    let s = TestServer::start().await;
    let alice = s.register("alice", PW).await;
    let bob = s.register("bob", PW).await;
    let room = s
        .create_room(&alice.access_token, &json!({ "preset": "public_chat" }))
        .await;
    let before_bob = s.sync(&alice.access_token, None, 0).await["next_batch"]
        .as_str()
        .expect("next_batch")
        .to_owned();
    s.join(&bob.access_token, &room).await;

    let member_ids = |body: &Value| {
        let mut ids: Vec<String> = body["chunk"]
            .as_array()
            .expect("chunk")
            .iter()
            .map(|e| e["state_key"].as_str().expect("state_key").to_owned())
            .collect();
        ids.sort();
        ids
    };
    let (st, then) = s
        .get(
            &room_path(&room, &format!("members?at={}", enc(&before_bob))),
            alice.token(),
        )
        .await;
    assert_eq!(st, StatusCode::OK, "{then}");
    assert_eq!(member_ids(&then), vec![alice.user_id.clone()], "{then}");
    let (st, now) = s.get(&room_path(&room, "members"), alice.token()).await;
    assert_eq!(st, StatusCode::OK, "{now}");
    let mut both = vec![alice.user_id.clone(), bob.user_id.clone()];
    both.sort();
    assert_eq!(member_ids(&now), both, "{now}");
    let (st, bad) = s
        .get(&room_path(&room, "members?at=nonsense"), alice.token())
        .await;
    assert_eq!(
        (st, bad["errcode"].as_str()),
        (StatusCode::BAD_REQUEST, Some("M_INVALID_PARAM")),
        "{bad}"
    );
}

#[tokio::test]
async fn non_members_are_forbidden() {
    let s = TestServer::start().await;
    let alice = s.register("alice", PW).await;
    let carol = s.register("carol", PW).await;
    let room = s
        .create_room(&alice.access_token, &json!({ "preset": "private_chat" }))
        .await;
    let event_id = s
        .send_message(&alice.access_token, &room, "t1", "secret")
        .await;

    let resp = s
        .put(
            &room_path(&room, "send/m.room.message/c1"),
            carol.token(),
            &json!({ "msgtype": "m.text", "body": "x" }),
        )
        .await;
    assert_err(&resp, 403, "M_FORBIDDEN", "non-member sends a message");
    let resp = s
        .post(
            &format!("{C}/join/{}", enc(&room)),
            carol.token(),
            &json!({}),
        )
        .await;
    assert_err(
        &resp,
        403,
        "M_FORBIDDEN",
        "joining an invite-only room uninvited",
    );
    let resp = s
        .get(&room_path(&room, "messages?dir=b"), carol.token())
        .await;
    assert_err(&resp, 403, "M_FORBIDDEN", "non-member reads /messages");
    let resp = s
        .get(
            &room_path(&room, &format!("event/{}", enc(&event_id))),
            carol.token(),
        )
        .await;
    assert!(
        matches!(resp.0.as_u16(), 403 | 404) && resp.1["content"]["body"].is_null(),
        "non-member read an event: {} {}",
        resp.0,
        resp.1
    );
}

#[tokio::test]
async fn left_member_sees_nothing_after_leaving() {
    let s = TestServer::start().await;
    let alice = s.register("alice", PW).await;
    let bob = s.register("bob", PW).await;
    let room = s
        .create_room(&alice.access_token, &json!({ "preset": "public_chat" }))
        .await;
    s.join(&bob.access_token, &room).await;
    s.send_message(&alice.access_token, &room, "t1", "while bob is here")
        .await;
    let bob_since = s.sync(&bob.access_token, None, 0).await["next_batch"]
        .as_str()
        .unwrap()
        .to_owned();
    s.leave(&bob.access_token, &room).await;
    let secret = s
        .send_message(&alice.access_token, &room, "t2", "after bob left")
        .await;

    let resp = s.sync(&bob.access_token, Some(&bob_since), 0).await;
    let left = &resp["rooms"]["leave"][&room];
    assert!(
        left.is_object(),
        "left room missing from bob's sync: {resp}"
    );
    assert!(resp["rooms"]["join"].get(&room).is_none(), "{resp}");
    assert!(
        !resp.to_string().contains("after bob left"),
        "sync leaks post-leave message: {resp}"
    );

    let (st, page) = s
        .get(&room_path(&room, "messages?dir=b&limit=100"), bob.token())
        .await;
    if st == StatusCode::OK {
        let bodies = message_bodies(page["chunk"].as_array().unwrap());
        assert!(
            !bodies.contains(&"after bob left".to_owned()),
            "/messages leaks post-leave message: {page}"
        );
    } else {
        assert_eq!(st, StatusCode::FORBIDDEN, "{page}");
    }
    let (st, ev) = s
        .get(
            &room_path(&room, &format!("event/{}", enc(&secret))),
            bob.token(),
        )
        .await;
    assert!(
        matches!(st.as_u16(), 403 | 404),
        "post-leave event readable: {st} {ev}"
    );
}

#[tokio::test]
async fn kick_ban_unban() {
    let s = TestServer::start().await;
    let alice = s.register("alice", PW).await;
    let bob = s.register("bob", PW).await;
    let room = s
        .create_room(&alice.access_token, &json!({ "preset": "public_chat" }))
        .await;
    s.join(&bob.access_token, &room).await;

    let resp = s
        .post(
            &room_path(&room, "kick"),
            bob.token(),
            &json!({ "user_id": alice.user_id }),
        )
        .await;
    assert_err(&resp, 403, "M_FORBIDDEN", "bob (power 0) kicks alice");

    let resp = s
        .post(
            &room_path(&room, "kick"),
            alice.token(),
            &json!({ "user_id": bob.user_id, "reason": "out" }),
        )
        .await;
    assert_ok(&resp, "kick");
    let (_, member) = s
        .get(
            &state_path(&room, "m.room.member", &bob.user_id),
            alice.token(),
        )
        .await;
    assert_eq!(member["membership"], "leave", "{member}");
    assert_eq!(member["reason"], "out", "{member}");

    s.join(&bob.access_token, &room).await;
    assert_ok(
        &s.post(
            &room_path(&room, "ban"),
            alice.token(),
            &json!({ "user_id": bob.user_id }),
        )
        .await,
        "ban",
    );
    let resp = s
        .post(&format!("{C}/join/{}", enc(&room)), bob.token(), &json!({}))
        .await;
    assert_err(&resp, 403, "M_FORBIDDEN", "banned user joins");
    let (_, member) = s
        .get(
            &state_path(&room, "m.room.member", &bob.user_id),
            alice.token(),
        )
        .await;
    assert_eq!(member["membership"], "ban", "{member}");

    assert_ok(
        &s.post(
            &room_path(&room, "unban"),
            alice.token(),
            &json!({ "user_id": bob.user_id }),
        )
        .await,
        "unban",
    );
    s.join(&bob.access_token, &room).await;
}

#[tokio::test]
async fn forget_removes_left_room_from_sync() {
    let s = TestServer::start().await;
    let alice = s.register("alice", PW).await;
    let bob = s.register("bob", PW).await;
    let room = s
        .create_room(&alice.access_token, &json!({ "preset": "public_chat" }))
        .await;
    s.join(&bob.access_token, &room).await;
    s.leave(&bob.access_token, &room).await;

    let resp = s.sync(&bob.access_token, None, 0).await;
    // Initial syncs may omit left rooms; but it must not be joined.
    assert!(resp["rooms"]["join"].get(&room).is_none(), "{resp}");
    assert_ok(
        &s.post(&room_path(&room, "forget"), bob.token(), &json!({}))
            .await,
        "forget",
    );
    let filter = enc(&json!({ "room": { "include_leave": true } }).to_string());
    let (st, resp) = s
        .get(&format!("{C}/sync?timeout=0&filter={filter}"), bob.token())
        .await;
    assert_eq!(st, StatusCode::OK, "{resp}");
    assert!(
        resp["rooms"]["leave"].get(&room).is_none(),
        "forgotten room still in sync: {resp}"
    );

    let resp = s
        .post(&room_path(&room, "forget"), alice.token(), &json!({}))
        .await;
    assert_eq!(
        resp.0,
        StatusCode::BAD_REQUEST,
        "forgetting a joined room: {}",
        resp.1
    );
}

#[tokio::test]
async fn knocking_asks_to_join_and_can_be_accepted() {
    let s = TestServer::start().await;
    let alice = s.register("alice", PW).await;
    let bob = s.register("bob", PW).await;
    let knock_room = s
        .create_room(
            &alice.access_token,
            &json!({ "room_version": "11", "initial_state": [
        { "type": "m.room.join_rules", "state_key": "", "content": { "join_rule": "knock" } }
    ] }),
        )
        .await;
    let invite_only = s
        .create_room(&alice.access_token, &json!({ "room_version": "11" }))
        .await;
    let since = s.sync(&bob.access_token, None, 0).await["next_batch"]
        .as_str()
        .expect("next_batch")
        .to_owned();

    let knock = |room: &str| {
        let path = format!("/_matrix/client/v3/knock/{}", enc(room));
        let s = &s;
        let token = bob.access_token.clone();
        async move {
            s.post(&path, Some(&token), &json!({ "reason": "let me in" }))
                .await
        }
    };
    let (st, body) = knock(&invite_only).await;
    assert_eq!(
        (st, body["errcode"].as_str()),
        (StatusCode::FORBIDDEN, Some("M_FORBIDDEN")),
        "{body}"
    );
    let (st, body) = knock(&knock_room).await;
    assert_eq!(
        (st, body["room_id"].as_str()),
        (StatusCode::OK, Some(knock_room.as_str())),
        "{body}"
    );

    // Bob sees the knock in his sync; Alice sees the knock as a member event.
    let synced = s.sync(&bob.access_token, Some(&since), 0).await;
    let knock_state = &synced["rooms"]["knock"][&knock_room]["knock_state"]["events"];
    let own = knock_state
        .as_array()
        .expect("knock_state")
        .iter()
        .find(|e| e["type"] == "m.room.member")
        .cloned()
        .expect("member event");
    assert_eq!(
        (
            own["content"]["membership"].as_str(),
            own["state_key"].as_str()
        ),
        (Some("knock"), Some(bob.user_id.as_str())),
        "{synced}"
    );
    let (_, member) = s
        .get(
            &room_path(
                &knock_room,
                &format!("state/m.room.member/{}", enc(&bob.user_id)),
            ),
            alice.token(),
        )
        .await;
    assert_eq!(
        (member["membership"].as_str(), member["reason"].as_str()),
        (Some("knock"), Some("let me in")),
        "{member}"
    );

    // Alice lets Bob in by inviting him; he joins.
    s.invite(&alice.access_token, &knock_room, &bob.user_id)
        .await;
    s.join(&bob.access_token, &knock_room).await;
    let (st, body) = knock(&knock_room).await;
    assert_eq!(
        (st, body["errcode"].as_str()),
        (StatusCode::FORBIDDEN, Some("M_FORBIDDEN")),
        "{body}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_joins_and_sends_stay_consistent() {
    const USERS: usize = 6;
    const PER_USER: usize = 15;
    let s = std::sync::Arc::new(TestServer::start().await);
    let alice = s.register("alice", PW).await;
    let room = s
        .create_room(&alice.access_token, &json!({ "preset": "public_chat" }))
        .await;
    let mut users = Vec::new();
    for i in 0..USERS {
        users.push(s.register(&format!("user{i}"), PW).await);
    }

    let tasks: Vec<_> = users
        .iter()
        .cloned()
        .enumerate()
        .map(|(i, user)| {
            let (s, room) = (s.clone(), room.clone());
            tokio::spawn(async move {
                s.join(&user.access_token, &room).await;
                let mut ids = Vec::new();
                for n in 0..PER_USER {
                    let body = format!("u{i}-{n}");
                    ids.push(
                        s.send_message(&user.access_token, &room, &body, &body)
                            .await,
                    );
                }
                ids
            })
        })
        .collect();
    let mut sent = Vec::new();
    for task in tasks {
        sent.push(task.await.expect("writer task"));
    }

    let (st, joined) = s
        .get(&room_path(&room, "joined_members"), alice.token())
        .await;
    assert_eq!(st, StatusCode::OK, "{joined}");
    assert_eq!(
        joined["joined"].as_object().unwrap().len(),
        USERS + 1,
        "a concurrent join was lost: {joined}"
    );

    let page = messages(&s, &alice, &room, "dir=f&limit=1000").await;
    let chunk = page["chunk"].as_array().unwrap();
    let bodies = message_bodies(chunk);
    assert_eq!(bodies.len(), USERS * PER_USER, "{page}");
    for (i, ids_of_user) in sent.iter().enumerate() {
        let positions: Vec<usize> = ids_of_user
            .iter()
            .map(|id| {
                chunk
                    .iter()
                    .position(|e| e["event_id"] == id.as_str())
                    .expect("acknowledged event in history")
            })
            .collect();
        assert!(
            positions.windows(2).all(|w| w[0] < w[1]),
            "user{i}'s messages out of order"
        );
        let join_pos = chunk
            .iter()
            .position(|e| {
                e["type"] == "m.room.member" && e["state_key"] == users[i].user_id.as_str()
            })
            .expect("join in history");
        assert!(join_pos < positions[0], "user{i} spoke before joining");
    }

    // Every member's sync agrees on the membership.
    for user in &users {
        let resp = s.sync(&user.access_token, None, 0).await;
        let state_and_timeline: Vec<Value> = resp["rooms"]["join"][&room]["state"]["events"]
            .as_array()
            .cloned()
            .unwrap_or_default()
            .into_iter()
            .chain(timeline(&resp, &room))
            .collect();
        let mut joined_members: Vec<&str> = Vec::new();
        for e in &state_and_timeline {
            if e["type"] == "m.room.member" {
                let key = e["state_key"].as_str().unwrap();
                joined_members.retain(|k| *k != key);
                if e["content"]["membership"] == "join" {
                    joined_members.push(key);
                }
            }
        }
        // The initial sync's timeline may be limited; the summary must still count everyone.
        let summary = &resp["rooms"]["join"][&room]["summary"]["m.joined_member_count"];
        if !summary.is_null() {
            assert_eq!(summary, &json!(USERS + 1), "{resp}");
        }
        assert!(
            joined_members.contains(&user.user_id.as_str()),
            "{} not joined in own sync",
            user.user_id
        );
    }
}
