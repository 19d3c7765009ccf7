//! Server-wide endpoints and lifecycle: discovery (`/versions`, `.well-known`), TURN
//! credentials, and user data that survives a restart.

use myelin_testing::http::{assert_err, assert_ok, errcode, register, C, PW};
use myelin_testing::{enc, timeline, StatusCode, TestServer};
use serde_json::json;

#[tokio::test]
async fn discovery_endpoints() {
    let s = TestServer::start().await;
    let alice = s.register("alice", PW).await;

    let (st, versions) = s.get("/_matrix/client/versions", None).await;
    assert_eq!(st, StatusCode::OK, "{versions}");
    let list = versions["versions"].as_array().expect("versions array");
    assert!(
        list.iter()
            .any(|v| v.as_str().is_some_and(|v| v.starts_with("v1."))),
        "{versions}"
    );

    let (st, caps) = s.get(&format!("{C}/capabilities"), alice.token()).await;
    assert_eq!(st, StatusCode::OK, "{caps}");
    let room_versions = &caps["capabilities"]["m.room_versions"];
    let default = room_versions["default"]
        .as_str()
        .unwrap_or_else(|| panic!("no default room version: {caps}"));
    assert!(
        room_versions["available"].get(default).is_some(),
        "default room version not available: {caps}"
    );
    assert_err(
        &s.get(&format!("{C}/capabilities"), None).await,
        401,
        "M_MISSING_TOKEN",
        "capabilities without token",
    );

    // Without configured discovery information the spec's answer is 404.
    let resp = s.get("/.well-known/matrix/client", None).await;
    assert_err(
        &resp,
        404,
        "M_NOT_FOUND",
        "well-known without configuration",
    );
}

#[tokio::test]
async fn well_known_client_when_configured() {
    let s = TestServer::start_with(|c| {
        c.well_known.client_base_url = Some("https://matrix.example.org".to_owned());
    })
    .await;
    let (st, wk) = s.get("/.well-known/matrix/client", None).await;
    assert_eq!(st, StatusCode::OK, "{wk}");
    assert_eq!(
        wk["m.homeserver"]["base_url"], "https://matrix.example.org",
        "{wk}"
    );
}

#[tokio::test]
async fn support_well_known_and_profile_field_delete() {
    let plain = TestServer::start().await;
    let (st, body) = plain.get("/.well-known/matrix/support", None).await;
    assert_eq!(
        (st, body["errcode"].as_str()),
        (StatusCode::NOT_FOUND, Some("M_NOT_FOUND"))
    );

    let s = TestServer::start_with(|c| {
        c.well_known.support_page = Some("https://localhost/support".into());
        c.well_known.support_contacts = vec![myelin::config::SupportContact {
            role: "m.role.admin".into(),
            matrix_id: Some("@admin:localhost".into()),
            email_address: None,
        }];
    })
    .await;
    let (st, body) = s.get("/.well-known/matrix/support", None).await;
    assert_eq!(st, StatusCode::OK);
    assert_eq!(
        body,
        json!({ "support_page": "https://localhost/support", "contacts": [{ "role": "m.role.admin", "matrix_id": "@admin:localhost" }] })
    );

    let alice = s.register("alice", PW).await;
    let field = format!(
        "/_matrix/client/v3/profile/{}/displayname",
        enc(&alice.user_id)
    );
    let (st, _) = s
        .put(&field, alice.token(), &json!({ "displayname": "Alice" }))
        .await;
    assert_eq!(st, StatusCode::OK);
    let (st, _) = s.delete(&field, alice.token(), &json!({})).await;
    assert_eq!(st, StatusCode::OK);
    let (st, body) = s.get(&field, None).await;
    assert_eq!(
        (st, body["errcode"].as_str()),
        (StatusCode::NOT_FOUND, Some("M_NOT_FOUND")),
        "{body}"
    );
    let bob = s.register("bob", PW).await;
    let (st, body) = s.delete(&field, bob.token(), &json!({})).await;
    assert_eq!(
        (st, body["errcode"].as_str()),
        (StatusCode::FORBIDDEN, Some("M_FORBIDDEN")),
        "{body}"
    );
}

#[tokio::test]
async fn turn_credentials_when_configured() {
    let plain = TestServer::start().await;
    let alice = plain.register("alice", PW).await;
    let (st, body) = plain
        .get("/_matrix/client/v3/voip/turnServer", alice.token())
        .await;
    assert_eq!(
        (st, body),
        (StatusCode::OK, json!({})),
        "no TURN server configured"
    );
    let (st, body) = plain
        .get("/_matrix/client/v3/account/3pid", alice.token())
        .await;
    assert_eq!((st, body), (StatusCode::OK, json!({ "threepids": [] })));

    let s = TestServer::start_with(|c| {
        c.turn.uris = vec!["turn:turn.localhost:3478?transport=udp".into()];
        c.turn.shared_secret = Some("secret".into());
        c.turn.user_lifetime_ms = 3_600_000;
    })
    .await;
    let alice = s.register("alice", PW).await;
    let (st, body) = s
        .get("/_matrix/client/v3/voip/turnServer", alice.token())
        .await;
    assert_eq!(st, StatusCode::OK, "{body}");
    assert_eq!(
        (body["ttl"].as_u64(), body["uris"][0].as_str()),
        (Some(3600), Some("turn:turn.localhost:3478?transport=udp")),
        "{body}"
    );
    let username = body["username"].as_str().expect("username");
    let (expiry, user) = username.split_once(':').expect("expiry:user");
    assert_eq!(user, alice.user_id);
    assert!(expiry.parse::<u64>().expect("expiry") > 1_700_000_000);
    assert_eq!(
        body["password"].as_str().map(str::len),
        Some(28),
        "base64 of a SHA-1 HMAC"
    );
    let (st, body) = s.get("/_matrix/client/v3/voip/turnServer", None).await;
    assert_eq!(
        (st, body["errcode"].as_str()),
        (StatusCode::UNAUTHORIZED, Some("M_MISSING_TOKEN"))
    );
}

#[tokio::test]
async fn user_data_survives_restart() {
    let s = TestServer::start().await;
    let alice = s.register("alice", PW).await;
    let room = s.create_room(&alice.access_token, &json!({})).await;
    let user = enc(&alice.user_id);
    let (st, body) = s
        .post(
            &format!("{C}/user/{user}/filter"),
            alice.token(),
            &json!({ "room": { "timeline": { "limit": 3 } } }),
        )
        .await;
    assert_eq!(st, StatusCode::OK, "{body}");
    let filter_id = body["filter_id"].as_str().unwrap().to_owned();
    let global = format!("{C}/user/{user}/account_data/com.example.kept");
    assert_ok(
        &s.put(&global, alice.token(), &json!({ "k": true })).await,
        "account data",
    );
    let tag = format!("{C}/user/{user}/rooms/{}/tags/m.favourite", enc(&room));
    assert_ok(&s.put(&tag, alice.token(), &json!({})).await, "tag");
    let device = format!("{C}/devices/{}", enc(&alice.device_id));
    assert_ok(
        &s.put(&device, alice.token(), &json!({ "display_name": "Kept" }))
            .await,
        "rename device",
    );
    let profile = format!("{C}/profile/{user}/displayname");
    assert_ok(
        &s.put(
            &profile,
            alice.token(),
            &json!({ "displayname": "Kept Alice" }),
        )
        .await,
        "displayname",
    );

    let s = s.restarted().await;

    let (st, filter) = s
        .get(
            &format!("{C}/user/{user}/filter/{}", enc(&filter_id)),
            alice.token(),
        )
        .await;
    assert_eq!(st, StatusCode::OK, "filter after restart: {filter}");
    assert_eq!(filter["room"]["timeline"]["limit"], 3);
    assert_eq!(s.get(&global, alice.token()).await.1, json!({ "k": true }));
    let (_, tags) = s
        .get(
            &format!("{C}/user/{user}/rooms/{}/tags", enc(&room)),
            alice.token(),
        )
        .await;
    assert!(tags["tags"]["m.favourite"].is_object(), "{tags}");
    let (_, dev) = s.get(&device, alice.token()).await;
    assert_eq!(dev["display_name"], "Kept", "{dev}");
    assert_eq!(s.get(&profile, None).await.1["displayname"], "Kept Alice");
    let (st, resp) = s
        .get(
            &format!("{C}/sync?timeout=0&filter={}", enc(&filter_id)),
            alice.token(),
        )
        .await;
    assert_eq!(st, StatusCode::OK, "{resp}");
    assert!(
        timeline(&resp, &room).len() <= 3,
        "stored filter not applied after restart: {resp}"
    );
}

/// No policy server is named (404), and `whois` shows a user their own devices but refuses
/// other users to non-administrators.
#[tokio::test]
async fn policy_server_and_whois() {
    let s = TestServer::start().await;
    let (status, body) = s.get("/.well-known/matrix/policy_server", None).await;
    assert_eq!(
        (status, errcode(&body)),
        (StatusCode::NOT_FOUND, "M_NOT_FOUND"),
        "{body}"
    );

    let alice = register(&s, "alice").await;
    let bob = register(&s, "bob").await;
    let whois = |user: &str| format!("/_matrix/client/v3/admin/whois/{}", enc(user));
    let (status, own) = s.get(&whois(&alice.user_id), alice.token()).await;
    assert_eq!(status, StatusCode::OK, "{own}");
    assert_eq!(own["user_id"], alice.user_id.as_str());
    assert!(
        own["devices"][&alice.device_id]["sessions"].is_array(),
        "{own}"
    );
    let (status, body) = s.get(&whois(&bob.user_id), alice.token()).await;
    assert_eq!(
        (status, errcode(&body)),
        (StatusCode::FORBIDDEN, "M_FORBIDDEN"),
        "{body}"
    );
}
