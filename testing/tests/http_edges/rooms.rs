//! Rooms as a whole: power levels over state changes, aliases and the joined-rooms list,
//! upgrades, room summaries and mutual rooms.

use myelin_testing::http::{assert_err, assert_ok, room_path, C, PW};
use myelin_testing::{enc, Account, StatusCode, TestServer};
use serde_json::json;

use crate::state_path;

#[tokio::test]
async fn power_levels_forbid_unprivileged_state_changes() {
    let s = TestServer::start().await;
    let alice = s.register("alice", PW).await;
    let bob = s.register("bob", PW).await;
    let room = s
        .create_room(
            &alice.access_token,
            &json!({ "preset": "public_chat", "name": "Original" }),
        )
        .await;
    s.join(&bob.access_token, &room).await;

    // Alice makes state changes need power 50 (bob has the default 0).
    let (st, mut pl) = s
        .get(&state_path(&room, "m.room.power_levels", ""), alice.token())
        .await;
    assert_eq!(st, StatusCode::OK, "get power levels: {pl}");
    pl["state_default"] = json!(50);
    assert_ok(
        &s.put(
            &state_path(&room, "m.room.power_levels", ""),
            alice.token(),
            &pl,
        )
        .await,
        "alice sets power levels",
    );

    assert_err(
        &s.put(
            &state_path(&room, "m.room.name", ""),
            bob.token(),
            &json!({ "name": "Hijacked" }),
        )
        .await,
        403,
        "M_FORBIDDEN",
        "bob sets the room name",
    );
    let mut escalated = pl.clone();
    escalated["users"][&bob.user_id] = json!(100);
    assert_err(
        &s.put(
            &state_path(&room, "m.room.power_levels", ""),
            bob.token(),
            &escalated,
        )
        .await,
        403,
        "M_FORBIDDEN",
        "bob grants himself power",
    );
    assert_err(
        &s.put(
            &state_path(&room, "com.example.custom", ""),
            bob.token(),
            &json!({ "x": 1 }),
        )
        .await,
        403,
        "M_FORBIDDEN",
        "bob sets a custom state event",
    );

    // Messages need only events_default (0), so bob may still talk.
    s.send_message(&bob.access_token, &room, "b1", "still allowed")
        .await;

    // Nothing bob tried took effect (GET without the optional trailing slash).
    let name_path = room_path(&room, "state/m.room.name");
    let (st, name) = s.get(&name_path, bob.token()).await;
    assert_eq!(st, StatusCode::OK, "get name: {name}");
    assert_eq!(name["name"], "Original");
    let (_, pl_now) = s
        .get(&state_path(&room, "m.room.power_levels", ""), bob.token())
        .await;
    assert_eq!(pl_now["state_default"], 50, "{pl_now}");
    assert!(
        pl_now["users"].get(&bob.user_id).is_none(),
        "bob gained power: {pl_now}"
    );
}

#[tokio::test]
async fn room_alias_and_joined_rooms() {
    let s = TestServer::start().await;
    let alice = s.register("alice", PW).await;
    let bob = s.register("bob", PW).await;
    let room = s
        .create_room(
            &alice.access_token,
            &json!({ "preset": "public_chat", "room_alias_name": "lobby" }),
        )
        .await;
    let resp = s
        .post(
            &format!("{C}/createRoom"),
            bob.token(),
            &json!({ "room_alias_name": "lobby" }),
        )
        .await;
    assert_err(
        &resp,
        400,
        "M_ROOM_IN_USE",
        "second room with the same alias",
    );

    let (st, dir) = s
        .get(
            &format!("{C}/directory/room/{}", enc("#lobby:localhost")),
            bob.token(),
        )
        .await;
    assert_eq!(st, StatusCode::OK, "{dir}");
    assert_eq!(dir["room_id"], room.as_str(), "{dir}");
    let (st, alias) = s
        .get(
            &state_path(&room, "m.room.canonical_alias", ""),
            alice.token(),
        )
        .await;
    assert_eq!(st, StatusCode::OK, "{alias}");
    assert_eq!(alias["alias"], "#lobby:localhost", "{alias}");

    // Joining by alias.
    let (st, joined) = s
        .post(
            &format!("{C}/join/{}", enc("#lobby:localhost")),
            bob.token(),
            &json!({}),
        )
        .await;
    assert_eq!(st, StatusCode::OK, "{joined}");
    assert_eq!(joined["room_id"], room.as_str());
    let (st, rooms) = s.get(&format!("{C}/joined_rooms"), bob.token()).await;
    assert_eq!(st, StatusCode::OK, "{rooms}");
    assert_eq!(rooms["joined_rooms"], json!([room]), "{rooms}");
}

#[tokio::test]
async fn room_upgrade_replaces_the_room() {
    let s = TestServer::start().await;
    let alice = s.register("alice", PW).await;
    let bob = s.register("bob", PW).await;
    let room = s
        .create_room(&alice.access_token, &json!({ "preset": "public_chat", "name": "Old name", "room_version": "10", "room_alias_name": "upgraded" }))
        .await;
    s.join(&bob.access_token, &room).await;

    // Bob (power 0) may not upgrade; an unknown version is refused.
    let upgrade = |who: &Account, version: &str| {
        let path = room_path(&room, "upgrade");
        let body = json!({ "new_version": version });
        let token = who.access_token.clone();
        let s = &s;
        async move { s.post(&path, Some(&token), &body).await }
    };
    let (st, body) = upgrade(&bob, "11").await;
    assert_eq!(
        (st, body["errcode"].as_str()),
        (StatusCode::FORBIDDEN, Some("M_FORBIDDEN")),
        "{body}"
    );
    let (st, body) = upgrade(&alice, "999").await;
    assert_eq!(
        (st, body["errcode"].as_str()),
        (StatusCode::BAD_REQUEST, Some("M_UNSUPPORTED_ROOM_VERSION")),
        "{body}"
    );

    for version in ["11", "12"] {
        let old = s
            .get(
                &format!(
                    "/_matrix/client/v3/directory/room/{}",
                    enc("#upgraded:localhost")
                ),
                None,
            )
            .await
            .1["room_id"]
            .as_str()
            .expect("alias")
            .to_owned();
        let path = room_path(&old, "upgrade");
        let (st, body) = s
            .post(&path, alice.token(), &json!({ "new_version": version }))
            .await;
        assert_eq!(st, StatusCode::OK, "{body}");
        let new = body["replacement_room"]
            .as_str()
            .expect("replacement_room")
            .to_owned();

        let (_, create) = s
            .get(&room_path(&new, "state/m.room.create/"), alice.token())
            .await;
        assert_eq!(
            (
                create["room_version"].as_str(),
                create["predecessor"]["room_id"].as_str()
            ),
            (Some(version), Some(old.as_str())),
            "{create}"
        );
        let (_, name) = s
            .get(&room_path(&new, "state/m.room.name/"), alice.token())
            .await;
        assert_eq!(name["name"], "Old name");
        let (_, rules) = s
            .get(&room_path(&new, "state/m.room.join_rules/"), alice.token())
            .await;
        assert_eq!(rules["join_rule"], "public");
        let (_, tombstone) = s
            .get(&room_path(&old, "state/m.room.tombstone/"), alice.token())
            .await;
        assert_eq!(tombstone["replacement_room"], new.as_str());
        // The alias follows the room; the old room is read-only for ordinary members.
        let (_, alias) = s
            .get(
                &format!(
                    "/_matrix/client/v3/directory/room/{}",
                    enc("#upgraded:localhost")
                ),
                None,
            )
            .await;
        assert_eq!(alias["room_id"], new.as_str());
        let (_, canonical) = s
            .get(
                &room_path(&new, "state/m.room.canonical_alias/"),
                alice.token(),
            )
            .await;
        assert_eq!(canonical["alias"], "#upgraded:localhost");
        let (st, body) = s
            .put(
                &room_path(&old, "send/m.room.message/late"),
                bob.token(),
                &json!({ "msgtype": "m.text", "body": "hi" }),
            )
            .await;
        assert_eq!(
            (st, body["errcode"].as_str()),
            (StatusCode::FORBIDDEN, Some("M_FORBIDDEN")),
            "{body}"
        );
        // Bob follows the tombstone.
        s.join(&bob.access_token, &new).await;
    }
}

#[tokio::test]
async fn room_summary_and_mutual_rooms() {
    let s = TestServer::start().await;
    let alice = s.register("alice", PW).await;
    let bob = s.register("bob", PW).await;
    let carol = s.register("carol", PW).await;
    let public = s
        .create_room(&alice.access_token, &json!({ "preset": "public_chat", "name": "Lobby", "topic": "Hello", "room_alias_name": "lobby" }))
        .await;
    let private = s
        .create_room(
            &alice.access_token,
            &json!({ "preset": "private_chat", "name": "Secret" }),
        )
        .await;
    s.join(&bob.access_token, &public).await;

    let summary = |room: String, token: Option<String>| {
        let s = &s;
        async move {
            s.get(
                &format!("/_matrix/client/v1/room_summary/{}", enc(&room)),
                token.as_deref(),
            )
            .await
        }
    };
    // Anyone may see the public room, by ID or alias; members see their membership.
    let (st, body) = summary("#lobby:localhost".into(), None).await;
    assert_eq!(st, StatusCode::OK, "{body}");
    assert_eq!(
        (
            body["room_id"].as_str(),
            body["name"].as_str(),
            body["topic"].as_str(),
            body["num_joined_members"].as_u64(),
            body["join_rule"].as_str()
        ),
        (
            Some(public.as_str()),
            Some("Lobby"),
            Some("Hello"),
            Some(2),
            Some("public")
        ),
        "{body}"
    );
    assert!(body.get("membership").is_none(), "{body}");
    let (_, body) = summary(public.clone(), Some(bob.access_token.clone())).await;
    assert_eq!(body["membership"], "join");
    // The private room is hidden from outsiders, shown to its member.
    let (st, body) = summary(private.clone(), Some(carol.access_token.clone())).await;
    assert_eq!(
        (st, body["errcode"].as_str()),
        (StatusCode::NOT_FOUND, Some("M_NOT_FOUND")),
        "{body}"
    );
    let (st, body) = summary(private.clone(), Some(alice.access_token.clone())).await;
    assert_eq!(
        (st, body["name"].as_str()),
        (StatusCode::OK, Some("Secret")),
        "{body}"
    );

    // Mutual rooms: only the public one is shared by Alice and Bob.
    let path = format!(
        "/_matrix/client/v1/mutual_rooms?user_id={}",
        enc(&bob.user_id)
    );
    let (st, body) = s.get(&path, alice.token()).await;
    assert_eq!(
        (st, body),
        (StatusCode::OK, json!({ "joined": [public], "count": 1 }))
    );
    let path = format!(
        "/_matrix/client/v1/mutual_rooms?user_id={}",
        enc(&alice.user_id)
    );
    let (st, body) = s.get(&path, alice.token()).await;
    assert_eq!(
        (st, body["errcode"].as_str()),
        (StatusCode::BAD_REQUEST, Some("M_INVALID_PARAM")),
        "own user: {body}"
    );
    let (st, body) = s
        .get("/_matrix/client/v1/mutual_rooms", alice.token())
        .await;
    assert_eq!(
        (st, body["errcode"].as_str()),
        (StatusCode::BAD_REQUEST, Some("M_INVALID_PARAM")),
        "missing user_id: {body}"
    );
}
