//! History visibility, as the spec's algorithm decides it ("History visibility" in the
//! Client-Server API), tried from every side: each visibility × each way a user can come to
//! have (or not have) a membership × each read endpoint.
//!
//! In one room per visibility, the room's owner sends `m1`, then the users take their places
//! (invited, invited then rejected, knocked, banned as strangers, joined), the owner sends `m2`,
//! the users move on (reject, withdraw the knock, leave, get banned, a late user joins), and the
//! owner sends `m3`. What each user may read is worked out from the spec in [`expected`], and
//! every endpoint must agree with it exactly.

use std::collections::BTreeSet;

use myelin_testing::http::{room_path, C, PW};
use myelin_testing::{enc, message_bodies, Account, StatusCode, TestServer};
use serde_json::{json, Value};

const VISIBILITIES: [&str; 4] = ["world_readable", "shared", "invited", "joined"];

/// The ways a user stands towards the room by the end.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Path {
    /// Never had any membership.
    Stranger,
    /// Invited before `m2`, still invited.
    Invited,
    /// Invited before `m2`, rejected the invite before `m3`.
    Rejected,
    /// Knocked before `m2`, withdrew the knock before `m3`.
    KnockedWithdrew,
    /// Banned before `m2` without ever joining.
    BannedStranger,
    /// Invited and joined before `m2`, left before `m3`.
    JoinedLeft,
    /// Invited and joined before `m2`, banned before `m3`.
    JoinedBanned,
    /// Invited and joined after `m2`, before `m3`; still joined.
    LateJoiner,
}

const PATHS: [Path; 8] = [
    Path::Stranger,
    Path::Invited,
    Path::Rejected,
    Path::KnockedWithdrew,
    Path::BannedStranger,
    Path::JoinedLeft,
    Path::JoinedBanned,
    Path::LateJoiner,
];

/// The messages a user on `path` may read in a room of `visibility`, from the spec's rules: an
/// event is visible when the visibility is `world_readable`, the user was joined at it, it is
/// `shared` and the user joined after it, or it is `invited` and the user was invited at it.
/// (A former member's view also ends where they left.)
fn expected(visibility: &str, path: Path) -> BTreeSet<&'static str> {
    use Path::*;
    let all = ["m1", "m2", "m3"];
    let pick = |names: &[&'static str]| names.iter().copied().collect::<BTreeSet<_>>();
    if visibility == "world_readable" {
        return pick(&all);
    }
    match (visibility, path) {
        (_, Stranger | KnockedWithdrew | BannedStranger) => pick(&[]),
        // Joined at m2; under `shared` m1 too, as they joined after it.
        ("shared", JoinedLeft | JoinedBanned) => pick(&["m1", "m2"]),
        (_, JoinedLeft | JoinedBanned) => pick(&["m2"]),
        ("shared", LateJoiner) => pick(&all),
        (_, LateJoiner) => pick(&["m3"]),
        // Invited at m2 (and at m3 while still invited), never joined.
        ("invited", Invited) => pick(&["m2", "m3"]),
        ("invited", Rejected) => pick(&["m2"]),
        (_, Invited | Rejected) => pick(&[]),
    }
}

/// Whether `/state` and `/members` answer for the user: members now, anyone in a world-readable
/// room, and former members at their own leave when they could see it (their membership before
/// it was `join`, or `invite` under `invited`).
fn may_read_state(visibility: &str, path: Path) -> bool {
    use Path::*;
    match path {
        _ if visibility == "world_readable" => true,
        LateJoiner | JoinedLeft | JoinedBanned => true,
        Invited | Rejected => visibility == "invited",
        Stranger | KnockedWithdrew | BannedStranger => false,
    }
}

struct Room {
    visibility: &'static str,
    room_id: String,
    /// `m1`, `m2`, `m3` → event ID.
    messages: Vec<(&'static str, String)>,
}

async fn post_ok(server: &TestServer, who: &Account, path: &str, body: Value) {
    let (status, resp) = server.post(path, who.token(), &body).await;
    assert_eq!(status, StatusCode::OK, "POST {path} {body}: {resp}");
}

/// Plays the scenario of the module documentation in a new room of `visibility`.
async fn play(
    server: &TestServer,
    owner: &Account,
    users: &[(Path, Account)],
    visibility: &'static str,
) -> Room {
    let room_id = server
        .create_room(
            &owner.access_token,
            &json!({
                "preset": "private_chat",
                "initial_state": [
                    { "type": "m.room.history_visibility", "state_key": "",
                      "content": { "history_visibility": visibility } },
                    { "type": "m.room.join_rules", "state_key": "",
                      "content": { "join_rule": "knock" } },
                ],
            }),
        )
        .await;
    let user = |path: Path| &users.iter().find(|(p, _)| *p == path).unwrap().1;
    let mut messages = Vec::new();
    let m1 = server
        .send_message(
            &owner.access_token,
            &room_id,
            &format!("{visibility}-1"),
            "m1",
        )
        .await;
    messages.push(("m1", m1));

    for path in [
        Path::Invited,
        Path::Rejected,
        Path::JoinedLeft,
        Path::JoinedBanned,
    ] {
        server
            .invite(&owner.access_token, &room_id, &user(path).user_id)
            .await;
    }
    for path in [Path::JoinedLeft, Path::JoinedBanned] {
        server.join(&user(path).access_token, &room_id).await;
    }
    post_ok(
        server,
        user(Path::KnockedWithdrew),
        &format!("{C}/knock/{}", enc(&room_id)),
        json!({}),
    )
    .await;
    post_ok(
        server,
        owner,
        &room_path(&room_id, "ban"),
        json!({ "user_id": user(Path::BannedStranger).user_id }),
    )
    .await;

    let m2 = server
        .send_message(
            &owner.access_token,
            &room_id,
            &format!("{visibility}-2"),
            "m2",
        )
        .await;
    messages.push(("m2", m2));

    for path in [Path::Rejected, Path::KnockedWithdrew, Path::JoinedLeft] {
        server.leave(&user(path).access_token, &room_id).await;
    }
    post_ok(
        server,
        owner,
        &room_path(&room_id, "ban"),
        json!({ "user_id": user(Path::JoinedBanned).user_id }),
    )
    .await;
    server
        .invite(
            &owner.access_token,
            &room_id,
            &user(Path::LateJoiner).user_id,
        )
        .await;
    server
        .join(&user(Path::LateJoiner).access_token, &room_id)
        .await;

    let m3 = server
        .send_message(
            &owner.access_token,
            &room_id,
            &format!("{visibility}-3"),
            "m3",
        )
        .await;
    messages.push(("m3", m3));
    Room {
        visibility,
        room_id,
        messages,
    }
}

fn bodies(events: &Value) -> BTreeSet<String> {
    message_bodies(events.as_array().map(Vec::as_slice).unwrap_or_default())
        .into_iter()
        .collect()
}

fn as_strings(set: &BTreeSet<&str>) -> BTreeSet<String> {
    set.iter().map(|s| s.to_string()).collect()
}

/// Every read endpoint, for one user in one room, against [`expected`].
async fn check(server: &TestServer, room: &Room, path: Path, who: &Account) {
    let want = expected(room.visibility, path);
    let what = format!("{path:?} in a {} room", room.visibility);
    let token = who.token();

    // /messages, backwards from the end.
    let (status, resp) = server
        .get(&room_path(&room.room_id, "messages?dir=b&limit=100"), token)
        .await;
    if status == StatusCode::OK {
        assert_eq!(
            bodies(&resp["chunk"]),
            as_strings(&want),
            "/messages: {what}"
        );
    } else {
        assert_eq!(status, StatusCode::FORBIDDEN, "/messages: {what}: {resp}");
        assert!(
            want.is_empty(),
            "/messages refused but {what} may read {want:?}"
        );
    }
    // /messages forwards from the start reads the same.
    let (status, resp) = server
        .get(&room_path(&room.room_id, "messages?dir=f&limit=100"), token)
        .await;
    if status == StatusCode::OK {
        assert_eq!(
            bodies(&resp["chunk"]),
            as_strings(&want),
            "/messages forwards: {what}"
        );
    }

    // /event and /context of each message.
    for (name, event_id) in &room.messages {
        let visible = want.contains(name);
        let (status, resp) = server
            .get(
                &room_path(&room.room_id, &format!("event/{}", enc(event_id))),
                token,
            )
            .await;
        if visible {
            assert_eq!(status, StatusCode::OK, "/event {name}: {what}: {resp}");
            assert_eq!(resp["content"]["body"], *name, "/event {name}: {what}");
        } else {
            assert!(
                matches!(status, StatusCode::NOT_FOUND | StatusCode::FORBIDDEN),
                "/event {name} must be hidden from {what}: {status} {resp}"
            );
        }
        let (status, resp) = server
            .get(
                &room_path(
                    &room.room_id,
                    &format!("context/{}?limit=10", enc(event_id)),
                ),
                token,
            )
            .await;
        if visible {
            assert_eq!(status, StatusCode::OK, "/context {name}: {what}: {resp}");
            let mut seen = bodies(&resp["events_before"]);
            seen.extend(bodies(&resp["events_after"]));
            seen.extend(bodies(&json!([resp["event"]])));
            assert!(
                seen.is_subset(&as_strings(&want)),
                "/context {name} shows {seen:?} to {what}, who may read {want:?}"
            );
        } else {
            assert!(
                matches!(status, StatusCode::NOT_FOUND | StatusCode::FORBIDDEN),
                "/context {name} must be hidden from {what}: {status} {resp}"
            );
        }
    }

    // /state and /members.
    let state_ok = may_read_state(room.visibility, path);
    for endpoint in ["state", "members"] {
        let (status, resp) = server.get(&room_path(&room.room_id, endpoint), token).await;
        if state_ok {
            assert_eq!(status, StatusCode::OK, "/{endpoint}: {what}: {resp}");
        } else {
            assert_eq!(
                status,
                StatusCode::FORBIDDEN,
                "/{endpoint} must be refused to {what}: {resp}"
            );
        }
    }

    // /sync: the room's timeline, joined or (with include_leave) left.
    let filter = json!({ "room": { "include_leave": true, "timeline": { "limit": 50 } } });
    let (status, resp) = server
        .get(
            &format!("{C}/sync?filter={}", enc(&filter.to_string())),
            token,
        )
        .await;
    assert_eq!(status, StatusCode::OK, "/sync: {what}: {resp}");
    let rooms = &resp["rooms"];
    let section = match path {
        Path::LateJoiner => "join",
        Path::Stranger | Path::Invited => "none",
        _ => "leave",
    };
    // A left room's timeline ends at the user's leave (or ban).
    let sync_want: BTreeSet<&str> = match path {
        Path::BannedStranger => want.intersection(&["m1"].into()).copied().collect(),
        Path::LateJoiner => want.clone(),
        _ => want.intersection(&["m1", "m2"].into()).copied().collect(),
    };
    for s in ["join", "leave"] {
        let timeline = &rooms[s][&room.room_id]["timeline"]["events"];
        if s == section {
            assert_eq!(
                bodies(timeline),
                as_strings(&sync_want),
                "/sync {s}: {what}"
            );
        } else {
            assert!(
                rooms[s].get(&room.room_id).is_none(),
                "/sync must not list the room under {s} for {what}: {resp}"
            );
        }
    }
}

#[tokio::test]
async fn each_visibility_each_membership_path_each_endpoint() {
    let server = TestServer::start_with(|c| c.rate_limits.enabled = false).await;
    let owner = server.register("owner", PW).await;
    let mut users = Vec::new();
    for (i, path) in PATHS.iter().enumerate() {
        users.push((*path, server.register(&format!("u{i}"), PW).await));
    }
    for visibility in VISIBILITIES {
        let room = play(&server, &owner, &users, visibility).await;
        for (path, who) in &users {
            check(&server, &room, *path, who).await;
        }
        // The owner, joined throughout, reads everything.
        let (_, resp) = server
            .get(
                &room_path(&room.room_id, "messages?dir=b&limit=100"),
                owner.token(),
            )
            .await;
        assert_eq!(
            bodies(&resp["chunk"]),
            as_strings(&["m1", "m2", "m3"].into_iter().collect()),
            "the owner of a {visibility} room"
        );
    }
}

/// The visibility at each event decides, not the room's visibility now: a message sent under
/// `joined` stays closed to newcomers after the room is switched to `shared`, and one sent
/// under `shared` stays open to later joiners after it is switched to `joined`.
#[tokio::test]
async fn visibility_is_read_at_each_event() {
    let server = TestServer::start_with(|c| c.rate_limits.enabled = false).await;
    let owner = server.register("owner", PW).await;
    let late = server.register("late", PW).await;
    let room_id = server
        .create_room(
            &owner.access_token,
            &json!({
                "preset": "public_chat",
                "initial_state": [{ "type": "m.room.history_visibility", "state_key": "",
                                    "content": { "history_visibility": "joined" } }],
            }),
        )
        .await;
    let set_visibility = |v: &'static str| {
        let path = room_path(&room_id, "state/m.room.history_visibility/");
        let token = owner.access_token.clone();
        let server = &server;
        async move {
            let (status, resp) = server
                .put(&path, Some(&token), &json!({ "history_visibility": v }))
                .await;
            assert_eq!(status, StatusCode::OK, "set {v}: {resp}");
        }
    };
    let secret = server
        .send_message(&owner.access_token, &room_id, "t1", "under joined")
        .await;
    set_visibility("shared").await;
    server
        .send_message(&owner.access_token, &room_id, "t2", "under shared")
        .await;
    set_visibility("joined").await;
    server
        .send_message(&owner.access_token, &room_id, "t3", "joined again")
        .await;
    server.join(&late.access_token, &room_id).await;
    server
        .send_message(&owner.access_token, &room_id, "t4", "after the join")
        .await;

    let (status, resp) = server
        .get(
            &room_path(&room_id, "messages?dir=b&limit=100"),
            late.token(),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{resp}");
    assert_eq!(
        bodies(&resp["chunk"]),
        ["under shared", "after the join"]
            .into_iter()
            .map(str::to_owned)
            .collect(),
        "only what was sent under `shared` before the join, and what came after it"
    );
    let (status, _) = server
        .get(
            &room_path(&room_id, &format!("event/{}", enc(&secret))),
            late.token(),
        )
        .await;
    assert_eq!(
        status,
        StatusCode::NOT_FOUND,
        "a message sent under `joined`"
    );
    let sync = server.sync(&late.access_token, None, 0).await;
    let timeline = &sync["rooms"]["join"][&room_id]["timeline"]["events"];
    assert!(
        !bodies(timeline).contains("under joined"),
        "/sync leaks a message sent under `joined`: {timeline}"
    );
    // The switches themselves are judged by the visibility before or after them: the newcomer
    // sees the switch to `shared` and the one back to `joined` (made under `shared`), and the
    // room's first settings (the preset's `shared`, then `joined`), made under `shared`.
    let (_, resp) = server
        .get(
            &room_path(&room_id, "messages?dir=b&limit=100"),
            late.token(),
        )
        .await;
    let switches: Vec<_> = resp["chunk"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["type"] == "m.room.history_visibility")
        .map(|e| {
            e["content"]["history_visibility"]
                .as_str()
                .unwrap()
                .to_owned()
        })
        .collect();
    assert_eq!(
        switches,
        ["joined", "shared", "joined", "shared"],
        "newest first: {resp}"
    );
}
