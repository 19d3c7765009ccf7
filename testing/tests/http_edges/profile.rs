//! Per-user data: profiles (and the member events that follow them), account data and
//! tags, push rules, and the user directory.

use myelin_testing::http::{assert_err, assert_ok, room_path, C, PW};
use myelin_testing::{enc, timeline, StatusCode, TestServer};
use serde_json::{json, Value};

use crate::state_path;

#[tokio::test]
async fn full_profile_and_state_listing() {
    let s = TestServer::start().await;
    let alice = s.register("alice", PW).await;
    let room = s
        .create_room(&alice.access_token, &json!({ "name": "Listing" }))
        .await;
    let profile = format!("{C}/profile/{}", enc(&alice.user_id));
    assert_ok(
        &s.put(
            &format!("{profile}/displayname"),
            alice.token(),
            &json!({ "displayname": "Al" }),
        )
        .await,
        "name",
    );
    let (st, body) = s.get(&profile, alice.token()).await;
    assert_eq!(st, StatusCode::OK, "{body}");
    assert_eq!(body["displayname"], "Al", "{body}");
    assert_err(
        &s.get(
            &format!("{C}/profile/{}", enc("@nobody:localhost")),
            alice.token(),
        )
        .await,
        404,
        "M_NOT_FOUND",
        "unknown profile",
    );

    let (st, state) = s.get(&room_path(&room, "state"), alice.token()).await;
    assert_eq!(st, StatusCode::OK, "{state}");
    let types: Vec<&str> = state
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["type"].as_str().unwrap())
        .collect();
    for ty in [
        "m.room.create",
        "m.room.member",
        "m.room.power_levels",
        "m.room.name",
    ] {
        assert!(types.contains(&ty), "{ty} missing from /state: {state}");
    }
    let (_, member) = s
        .get(
            &state_path(&room, "m.room.member", &alice.user_id),
            alice.token(),
        )
        .await;
    assert_eq!(
        member["displayname"], "Al",
        "member event follows the profile: {member}"
    );
}

#[tokio::test]
async fn displayname_change_updates_member_events() {
    let s = TestServer::start().await;
    let alice = s.register("alice", PW).await;
    let bob = s.register("bob", PW).await;
    let room1 = s
        .create_room(&alice.access_token, &json!({ "preset": "public_chat" }))
        .await;
    let room2 = s.create_room(&alice.access_token, &json!({})).await;
    s.join(&bob.access_token, &room1).await;
    let bob_since = s.sync(&bob.access_token, None, 0).await["next_batch"]
        .as_str()
        .unwrap()
        .to_owned();

    let profile = format!("{C}/profile/{}/displayname", enc(&alice.user_id));
    assert_ok(
        &s.put(
            &profile,
            alice.token(),
            &json!({ "displayname": "Alice Liddell" }),
        )
        .await,
        "set name",
    );
    let (st, body) = s.get(&profile, None).await;
    assert_eq!(st, StatusCode::OK, "{body}");
    assert_eq!(body["displayname"], "Alice Liddell");

    for room in [&room1, &room2] {
        let (st, member) = s
            .get(
                &state_path(room, "m.room.member", &alice.user_id),
                alice.token(),
            )
            .await;
        assert_eq!(st, StatusCode::OK, "{member}");
        assert_eq!(
            member["displayname"], "Alice Liddell",
            "member event in {room}: {member}"
        );
        assert_eq!(member["membership"], "join");
    }

    // Bob sees the new member event come in through sync.
    let resp = s.sync(&bob.access_token, Some(&bob_since), 5_000).await;
    let events = timeline(&resp, &room1);
    assert!(
        events.iter().any(|e| e["type"] == "m.room.member"
            && e["state_key"] == alice.user_id.as_str()
            && e["content"]["displayname"] == "Alice Liddell"),
        "bob's sync lacks alice's new member event: {resp}"
    );
}

#[tokio::test]
async fn account_data_and_tags_in_sync() {
    let s = TestServer::start().await;
    let alice = s.register("alice", PW).await;
    let room = s.create_room(&alice.access_token, &json!({})).await;
    let user = enc(&alice.user_id);
    let global = format!("{C}/user/{user}/account_data/com.example.global");
    let per_room = format!(
        "{C}/user/{user}/rooms/{}/account_data/com.example.room",
        enc(&room)
    );
    let tag = format!("{C}/user/{user}/rooms/{}/tags/u.work", enc(&room));

    assert_ok(
        &s.put(&global, alice.token(), &json!({ "a": 1 })).await,
        "global account data",
    );
    assert_ok(
        &s.put(&per_room, alice.token(), &json!({ "b": 2 })).await,
        "room account data",
    );
    assert_ok(
        &s.put(&tag, alice.token(), &json!({ "order": 0.5 })).await,
        "tag",
    );

    assert_eq!(s.get(&global, alice.token()).await.1, json!({ "a": 1 }));
    assert_eq!(s.get(&per_room, alice.token()).await.1, json!({ "b": 2 }));
    let (st, tags) = s
        .get(
            &format!("{C}/user/{user}/rooms/{}/tags", enc(&room)),
            alice.token(),
        )
        .await;
    assert_eq!(st, StatusCode::OK, "{tags}");
    assert_eq!(tags["tags"]["u.work"]["order"], 0.5, "{tags}");
    assert_err(
        &s.get(
            &format!("{C}/user/{user}/account_data/com.example.unset"),
            alice.token(),
        )
        .await,
        404,
        "M_NOT_FOUND",
        "unset account data",
    );

    let find = |events: &Value, ty: &str| -> Option<Value> {
        events
            .as_array()?
            .iter()
            .find(|e| e["type"] == ty)
            .map(|e| e["content"].clone())
    };

    let initial = s.sync(&alice.access_token, None, 0).await;
    assert_eq!(
        find(&initial["account_data"]["events"], "com.example.global"),
        Some(json!({ "a": 1 })),
        "{initial}"
    );
    let room_ad = &initial["rooms"]["join"][&room]["account_data"]["events"];
    assert_eq!(
        find(room_ad, "com.example.room"),
        Some(json!({ "b": 2 })),
        "{initial}"
    );
    let tags_event =
        find(room_ad, "m.tag").unwrap_or_else(|| panic!("no m.tag in sync: {initial}"));
    assert_eq!(tags_event["tags"]["u.work"]["order"], 0.5, "{initial}");

    // Changes arrive in incremental sync.
    let since = initial["next_batch"].as_str().unwrap().to_owned();
    assert_ok(
        &s.put(&global, alice.token(), &json!({ "a": 2 })).await,
        "update global",
    );
    assert_ok(
        &s.delete(&tag, alice.token(), &json!({})).await,
        "delete tag",
    );
    let inc = s.sync(&alice.access_token, Some(&since), 5_000).await;
    assert_eq!(
        find(&inc["account_data"]["events"], "com.example.global"),
        Some(json!({ "a": 2 })),
        "{inc}"
    );
    let tags_event = find(
        &inc["rooms"]["join"][&room]["account_data"]["events"],
        "m.tag",
    )
    .unwrap_or_else(|| panic!("tag removal not synced: {inc}"));
    assert_eq!(tags_event["tags"], json!({}), "{inc}");
}

#[tokio::test]
async fn account_data_of_other_users_is_forbidden() {
    let s = TestServer::start().await;
    let alice = s.register("alice", PW).await;
    let bob = s.register("bob", PW).await;
    let path = format!("{C}/user/{}/account_data/com.example", enc(&bob.user_id));
    let resp = s.put(&path, alice.token(), &json!({ "a": 1 })).await;
    assert_err(&resp, 403, "M_FORBIDDEN", "alice writes bob's account data");
    let resp = s.get(&path, alice.token()).await;
    assert_err(&resp, 403, "M_FORBIDDEN", "alice reads bob's account data");
}

#[tokio::test]
async fn server_controlled_account_data_is_refused() {
    let s = TestServer::start().await;
    let alice = s.register("alice", PW).await;
    let room = s.create_room(&alice.access_token, &json!({})).await;
    let user = enc(&alice.user_id);
    let room_level = format!(
        "{C}/user/{user}/rooms/{}/account_data/m.fully_read",
        enc(&room)
    );
    let global = format!("{C}/user/{user}/account_data/m.push_rules");
    let room_resp = s
        .put(&room_level, alice.token(), &json!({ "event_id": "$x" }))
        .await;
    let global_resp = s
        .put(&global, alice.token(), &json!({ "global": {} }))
        .await;
    assert_err(
        &global_resp,
        405,
        "M_BAD_JSON",
        "setting m.push_rules through global account data",
    );
    assert_err(
        &room_resp,
        405,
        "M_BAD_JSON",
        "setting m.fully_read through room account data",
    );
}

#[tokio::test]
async fn push_rules_can_be_read_changed_and_synced() {
    let s = TestServer::start().await;
    let alice = s.register("alice", PW).await;
    let t = alice.token();

    // Server defaults, both through /pushrules/ and the initial sync.
    let (st, all) = s.get("/_matrix/client/v3/pushrules/", t).await;
    assert_eq!(st, StatusCode::OK, "{all}");
    let overrides = all["global"]["override"]
        .as_array()
        .expect("override rules");
    assert!(
        overrides
            .iter()
            .any(|r| r["rule_id"] == ".m.rule.master" && r["default"] == true),
        "{all}"
    );
    for kind in ["override", "content", "room", "sender", "underride"] {
        assert!(all["global"][kind].is_array(), "{kind} missing: {all}");
    }
    let sync = s.sync(&alice.access_token, None, 0).await;
    let synced = sync["account_data"]["events"]
        .as_array()
        .expect("account data")
        .iter()
        .find(|e| e["type"] == "m.push_rules")
        .cloned();
    assert_eq!(
        synced.expect("m.push_rules in initial sync")["content"]["global"]["override"],
        all["global"]["override"]
    );
    let since = sync["next_batch"].as_str().expect("next_batch").to_owned();

    // A new content rule, placed, read back, toggled and given new actions.
    let rule = json!({ "pattern": "cake", "actions": ["notify", { "set_tweak": "highlight" }] });
    let (st, body) = s
        .put("/_matrix/client/v3/pushrules/global/content/cake", t, &rule)
        .await;
    assert_eq!(st, StatusCode::OK, "{body}");
    let (st, got) = s
        .get("/_matrix/client/v3/pushrules/global/content/cake", t)
        .await;
    assert_eq!(st, StatusCode::OK, "{got}");
    assert_eq!(
        (
            got["pattern"].as_str(),
            got["enabled"].as_bool(),
            got["default"].as_bool()
        ),
        (Some("cake"), Some(true), Some(false)),
        "{got}"
    );
    let (st, _) = s
        .put(
            "/_matrix/client/v3/pushrules/global/content/cake/enabled",
            t,
            &json!({ "enabled": false }),
        )
        .await;
    assert_eq!(st, StatusCode::OK);
    let (_, enabled) = s
        .get(
            "/_matrix/client/v3/pushrules/global/content/cake/enabled",
            t,
        )
        .await;
    assert_eq!(enabled, json!({ "enabled": false }));
    let (st, _) = s
        .put(
            "/_matrix/client/v3/pushrules/global/content/cake/actions",
            t,
            &json!({ "actions": [] }),
        )
        .await;
    assert_eq!(st, StatusCode::OK);
    let (_, actions) = s
        .get(
            "/_matrix/client/v3/pushrules/global/content/cake/actions",
            t,
        )
        .await;
    assert_eq!(actions, json!({ "actions": [] }));
    // Server default rules can be disabled but not deleted.
    let (st, _) = s
        .put(
            "/_matrix/client/v3/pushrules/global/override/.m.rule.master/enabled",
            t,
            &json!({ "enabled": true }),
        )
        .await;
    assert_eq!(st, StatusCode::OK);
    let (st, body) = s
        .delete(
            "/_matrix/client/v3/pushrules/global/override/.m.rule.master",
            t,
            &json!({}),
        )
        .await;
    assert_eq!(
        (st, body["errcode"].as_str()),
        (StatusCode::BAD_REQUEST, Some("M_INVALID_PARAM")),
        "{body}"
    );

    // The change reaches the next sync as account data.
    let next = s.sync(&alice.access_token, Some(&since), 0).await;
    let synced = next["account_data"]["events"]
        .as_array()
        .expect("account data")
        .iter()
        .find(|e| e["type"] == "m.push_rules")
        .cloned();
    let synced = synced.expect("m.push_rules after a change");
    assert!(
        synced["content"]["global"]["content"]
            .as_array()
            .expect("content rules")
            .iter()
            .any(|r| r["rule_id"] == "cake"),
        "{synced}"
    );

    // Errors: unknown rule, unknown kind, missing pattern, server-owned account data.
    let (st, body) = s
        .delete(
            "/_matrix/client/v3/pushrules/global/content/cake",
            t,
            &json!({}),
        )
        .await;
    assert_eq!(st, StatusCode::OK, "{body}");
    let (st, body) = s
        .get("/_matrix/client/v3/pushrules/global/content/cake", t)
        .await;
    assert_eq!(
        (st, body["errcode"].as_str()),
        (StatusCode::NOT_FOUND, Some("M_NOT_FOUND")),
        "{body}"
    );
    let (st, body) = s
        .get("/_matrix/client/v3/pushrules/global/nonsense/x", t)
        .await;
    assert_eq!(
        (st, body["errcode"].as_str()),
        (StatusCode::BAD_REQUEST, Some("M_INVALID_PARAM")),
        "{body}"
    );
    let (st, body) = s
        .put(
            "/_matrix/client/v3/pushrules/global/content/nopattern",
            t,
            &json!({ "actions": [] }),
        )
        .await;
    assert_eq!(
        (st, body["errcode"].as_str()),
        (StatusCode::BAD_REQUEST, Some("M_BAD_JSON")),
        "{body}"
    );
    let path = format!(
        "/_matrix/client/v3/user/{}/account_data/m.push_rules",
        enc(&alice.user_id)
    );
    let (st, body) = s.put(&path, t, &json!({ "global": {} })).await;
    assert_eq!(
        (st, body["errcode"].as_str()),
        (StatusCode::METHOD_NOT_ALLOWED, Some("M_BAD_JSON")),
        "{body}"
    );
}

#[tokio::test]
async fn user_directory_finds_people_in_shared_rooms() {
    let s = TestServer::start().await;
    let alice = s.register("alice", PW).await;
    let bob = s.register("bob", PW).await;
    let _loner = s.register("bobby", PW).await;
    let room = s
        .create_room(&alice.access_token, &json!({ "preset": "public_chat" }))
        .await;
    s.join(&bob.access_token, &room).await;
    let (st, _) = s
        .put(
            &format!(
                "/_matrix/client/v3/profile/{}/displayname",
                enc(&bob.user_id)
            ),
            bob.token(),
            &json!({ "displayname": "Robert Builder" }),
        )
        .await;
    assert_eq!(st, StatusCode::OK);

    let search = |term: &'static str, limit: u64| {
        let s = &s;
        let alice = &alice;
        async move {
            let (st, body) = s
                .post(
                    "/_matrix/client/v3/user_directory/search",
                    alice.token(),
                    &json!({ "search_term": term, "limit": limit }),
                )
                .await;
            assert_eq!(st, StatusCode::OK, "{body}");
            body
        }
    };
    let found = search("rob", 10).await;
    assert_eq!(
        found["results"],
        json!([{ "user_id": bob.user_id, "display_name": "Robert Builder" }]),
        "{found}"
    );
    assert_eq!(found["limited"], false);
    // bobby shares no room with alice, so only bob is found.
    let found = search("bob", 10).await;
    assert_eq!(
        found["results"].as_array().map(Vec::len),
        Some(1),
        "{found}"
    );
    let found = search("localhost", 1).await;
    assert_eq!(
        (
            found["results"].as_array().map(Vec::len),
            found["limited"].as_bool()
        ),
        (Some(1), Some(true)),
        "{found}"
    );
    let (st, body) = s
        .post(
            "/_matrix/client/v3/user_directory/search",
            alice.token(),
            &json!({ "limit": 3 }),
        )
        .await;
    assert_eq!(
        (st, body["errcode"].as_str()),
        (StatusCode::BAD_REQUEST, Some("M_BAD_JSON")),
        "{body}"
    );
}
