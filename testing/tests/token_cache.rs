//! The access-token cache is never stale: after each change to a user's sessions or account
//! flags, a token that was used (so cached) just before is refused (or let through) at once, with
//! no wait: logout, logout of all devices, deleting one device and several, a password change,
//! deactivation, a refresh, expiry, lock and suspension. Runs on SQLite and, with
//! `MYELIN_TEST_BACKEND=postgres`, on PostgreSQL.

use std::time::Duration;

use myelin_testing::http::{assert_err, assert_ok, password_auth, room_path, C, PW};
use myelin_testing::{enc, Account, StatusCode, TestServer};
use serde_json::{json, Value};

/// Asserts that `token` works now (and so is in the cache afterwards).
async fn works(s: &TestServer, token: &str, what: &str) {
    let resp = s.get(&format!("{C}/account/whoami"), Some(token)).await;
    assert_ok(&resp, what);
}

/// Asserts that `token` is refused now with 401 `M_UNKNOWN_TOKEN`.
async fn refused(s: &TestServer, token: &str, what: &str) {
    let resp = s.get(&format!("{C}/account/whoami"), Some(token)).await;
    assert_err(&resp, 401, "M_UNKNOWN_TOKEN", what);
}

/// A UIA-protected request (POST or DELETE as `delete`) completed with `m.login.password`.
async fn with_password(
    s: &TestServer,
    delete: bool,
    path: &str,
    who: &Account,
    body: Value,
) -> (StatusCode, Value) {
    let send = |body: Value| async move {
        if delete {
            s.delete(path, who.token(), &body).await
        } else {
            s.post(path, who.token(), &body).await
        }
    };
    let (st, uia) = send(body.clone()).await;
    assert_eq!(st, StatusCode::UNAUTHORIZED, "{path} must start UIA: {uia}");
    let mut body = body;
    body["auth"] = password_auth(&who.user_id, PW, Some(&uia["session"]));
    send(body).await
}

#[tokio::test]
async fn logout_and_logout_all_refuse_cached_tokens_at_once() {
    let s = TestServer::start().await;
    let alice = s.register("alice", PW).await;
    let phone = s.login("alice", PW).await;
    let laptop = s.login("alice", PW).await;
    for a in [&alice, &phone, &laptop] {
        works(&s, &a.access_token, "before logout").await;
    }

    assert_ok(
        &s.post(&format!("{C}/logout"), phone.token(), &json!({}))
            .await,
        "logout",
    );
    refused(&s, &phone.access_token, "the logged-out token").await;
    works(&s, &alice.access_token, "another device after a logout").await;

    assert_ok(
        &s.post(&format!("{C}/logout/all"), laptop.token(), &json!({}))
            .await,
        "logout/all",
    );
    refused(&s, &alice.access_token, "a token after logout/all").await;
    refused(
        &s,
        &laptop.access_token,
        "the caller's token after logout/all",
    )
    .await;
}

#[tokio::test]
async fn deleting_devices_refuses_their_cached_tokens_at_once() {
    let s = TestServer::start().await;
    let alice = s.register("alice", PW).await;
    let (one, two, three) = (
        s.login("alice", PW).await,
        s.login("alice", PW).await,
        s.login("alice", PW).await,
    );
    for a in [&alice, &one, &two, &three] {
        works(&s, &a.access_token, "before deletion").await;
    }

    let path = format!("{C}/devices/{}", enc(&one.device_id));
    assert_ok(
        &with_password(&s, true, &path, &alice, json!({})).await,
        "delete one device",
    );
    refused(&s, &one.access_token, "the deleted device's token").await;
    works(&s, &two.access_token, "a device not deleted").await;

    let body = json!({ "devices": [two.device_id, three.device_id] });
    let resp = with_password(&s, false, &format!("{C}/delete_devices"), &alice, body).await;
    assert_ok(&resp, "delete_devices");
    refused(&s, &two.access_token, "a bulk-deleted device's token").await;
    refused(&s, &three.access_token, "a bulk-deleted device's token").await;
    works(&s, &alice.access_token, "the device that deleted them").await;
}

#[tokio::test]
async fn a_password_change_refuses_other_cached_tokens_at_once() {
    let s = TestServer::start().await;
    let alice = s.register("alice", PW).await;
    let other = s.login("alice", PW).await;
    works(&s, &other.access_token, "before the change").await;

    let body = json!({ "new_password": "n3w-pass-word" });
    let resp = with_password(&s, false, &format!("{C}/account/password"), &alice, body).await;
    assert_ok(&resp, "change password");
    refused(
        &s,
        &other.access_token,
        "another device after a password change",
    )
    .await;
    works(&s, &alice.access_token, "the device that changed it").await;
}

#[tokio::test]
async fn deactivation_refuses_cached_tokens_at_once() {
    let s = TestServer::start().await;
    let alice = s.register("alice", PW).await;
    let other = s.login("alice", PW).await;
    works(&s, &other.access_token, "before deactivation").await;

    let resp = with_password(
        &s,
        false,
        &format!("{C}/account/deactivate"),
        &alice,
        json!({}),
    )
    .await;
    assert_ok(&resp, "deactivate");
    refused(&s, &alice.access_token, "the deactivating device").await;
    refused(
        &s,
        &other.access_token,
        "another device of a deactivated account",
    )
    .await;
}

/// Logs `alice` in with a refresh token; returns the login response.
async fn refreshable_login(s: &TestServer) -> Value {
    let body = json!({
        "type": "m.login.password",
        "identifier": { "type": "m.id.user", "user": "alice" },
        "password": PW,
        "refresh_token": true,
    });
    let (st, login) = s.post(&format!("{C}/login"), None, &body).await;
    assert_eq!(st, StatusCode::OK, "{login}");
    login
}

#[tokio::test]
async fn a_refreshed_token_is_refused_at_once() {
    let s = TestServer::start().await;
    s.register("alice", PW).await;
    let login = refreshable_login(&s).await;
    let old = login["access_token"].as_str().expect("access_token");
    works(&s, old, "before refresh").await;

    let body = json!({ "refresh_token": login["refresh_token"] });
    let (st, renewed) = s.post(&format!("{C}/refresh"), None, &body).await;
    assert_eq!(st, StatusCode::OK, "{renewed}");
    refused(&s, old, "the access token a refresh replaced").await;
    works(
        &s,
        renewed["access_token"].as_str().expect("access_token"),
        "the new one",
    )
    .await;
}

#[tokio::test]
async fn an_expired_cached_token_is_refused() {
    let s = TestServer::start_with(|c| c.limits.refreshable_token_lifetime_ms = 1_500).await;
    s.register("alice", PW).await;
    let login = refreshable_login(&s).await;
    let token = login["access_token"].as_str().expect("access_token");
    works(&s, token, "before expiry").await;
    // Expiry is a matter of time: the only wait in this file.
    tokio::time::sleep(Duration::from_millis(1_700)).await;
    let (st, body) = s.get(&format!("{C}/account/whoami"), Some(token)).await;
    assert_err(
        &(st, body.clone()),
        401,
        "M_UNKNOWN_TOKEN",
        "an expired token",
    );
    assert_eq!(body["soft_logout"], json!(true), "{body}");
}

/// Sends a message as `token` with transaction `txn`.
async fn send(s: &TestServer, token: &str, room: &str, txn: &str) -> (StatusCode, Value) {
    let path = room_path(room, &format!("send/m.room.message/{txn}"));
    let body = json!({ "msgtype": "m.text", "body": txn });
    s.put(&path, Some(token), &body).await
}

/// `PUT /admin/lock|suspend/{user}` as the administrator `root`.
async fn moderate(s: &TestServer, root: &str, which: &str, user: &str, value: bool) {
    let path = format!("/_matrix/client/v1/admin/{which}/{}", enc(user));
    let field = if which == "lock" {
        "locked"
    } else {
        "suspended"
    };
    let resp = s.put(&path, Some(root), &json!({ field: value })).await;
    assert_ok(&resp, which);
}

#[tokio::test]
async fn lock_and_suspension_apply_to_cached_tokens_at_once() {
    let s = TestServer::start_with_admin("root", "admin-password").await;
    let root = s.login("root", "admin-password").await.access_token;
    let bob = s.register("bob", PW).await;
    let (bt, user) = (bob.access_token.as_str(), bob.user_id.as_str());
    let room = s.create_room(bt, &json!({})).await;
    assert_ok(&send(&s, bt, &room, "t1").await, "send before suspension");

    moderate(&s, &root, "suspend", user, true).await;
    let resp = send(&s, bt, &room, "t2").await;
    assert_err(&resp, 403, "M_USER_SUSPENDED", "a suspended account sends");
    moderate(&s, &root, "suspend", user, false).await;
    let resp = send(&s, bt, &room, "t3").await;
    assert_ok(&resp, "send after the suspension is lifted");

    moderate(&s, &root, "lock", user, true).await;
    let resp = s.get(&format!("{C}/account/whoami"), Some(bt)).await;
    assert_err(
        &resp,
        401,
        "M_USER_LOCKED",
        "a locked account's cached token",
    );
    moderate(&s, &root, "lock", user, false).await;
    works(&s, bt, "after the lock is lifted").await;
}
