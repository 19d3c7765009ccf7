//! Account moderation and login tokens over HTTP: an administrator locks and suspends accounts
//! (spec v1.18), with the errors for everyone else; a locked account is served nothing, a
//! suspended one reads and leaves but cannot act; `POST /login/get_token` and `m.login.token`.

use myelin_testing::http::{assert_err, assert_ok, register, room_path, PW};
use myelin_testing::{enc, TestServer};
use serde_json::{json, Value};

const ADMIN_PW: &str = "admin-password";

async fn admin_token(s: &TestServer) -> String {
    s.login("root", ADMIN_PW)
        .await
        .token()
        .expect("token")
        .to_owned()
}

#[tokio::test]
async fn administrators_lock_and_suspend_accounts() {
    let s = TestServer::start_with_admin("root", ADMIN_PW).await;
    let root = admin_token(&s).await;
    let (alice, bob) = (register(&s, "alice").await, register(&s, "bob").await);
    let (at, bt) = (alice.token().expect("token"), bob.token().expect("token"));
    let lock = |user: &str| format!("/_matrix/client/v1/admin/lock/{}", enc(user));
    let suspend = |user: &str| format!("/_matrix/client/v1/admin/suspend/{}", enc(user));

    let caps = s.get("/_matrix/client/v3/capabilities", Some(&root)).await;
    assert_eq!(
        caps.1["capabilities"]["m.account_moderation"],
        json!({ "suspend": true, "lock": true })
    );
    let caps = s.get("/_matrix/client/v3/capabilities", Some(at)).await;
    assert!(caps.1["capabilities"].get("m.account_moderation").is_none());

    assert_err(
        &s.put(&lock(&bob.user_id), Some(at), &json!({ "locked": true }))
            .await,
        403,
        "M_FORBIDDEN",
        "a non-administrator locks someone",
    );
    assert_err(
        &s.get(&lock("@nobody:localhost"), Some(at)).await,
        403,
        "M_FORBIDDEN",
        "a non-administrator learns nothing about unknown accounts",
    );
    assert_err(
        &s.get(&lock("@nobody:localhost"), Some(&root)).await,
        404,
        "M_NOT_FOUND",
        "an unknown account",
    );
    assert_err(
        &s.get(&lock("@someone:elsewhere.example"), Some(&root))
            .await,
        400,
        "M_INVALID_PARAM",
        "a remote account",
    );
    assert_err(
        &s.put(
            &lock("@root:localhost"),
            Some(&root),
            &json!({ "locked": true }),
        )
        .await,
        403,
        "M_FORBIDDEN",
        "an administrator locks themselves",
    );

    // Suspended: reads and leaves, cannot send or create.
    let room = s.create_room(at, &json!({ "preset": "public_chat" })).await;
    s.join(bt, &room).await;
    let set: (_, Value) = s
        .put(
            &suspend(&bob.user_id),
            Some(&root),
            &json!({ "suspended": true }),
        )
        .await;
    assert_ok(&set, "suspend bob");
    assert_eq!(set.1, json!({ "suspended": true }));
    assert_eq!(
        s.get(&suspend(&bob.user_id), Some(&root)).await.1,
        json!({ "suspended": true })
    );
    assert_err(
        &s.put(
            &room_path(&room, "send/m.room.message/b1"),
            Some(bt),
            &json!({ "msgtype": "m.text", "body": "hi" }),
        )
        .await,
        403,
        "M_USER_SUSPENDED",
        "a suspended account sends",
    );
    assert_err(
        &s.post("/_matrix/client/v3/createRoom", Some(bt), &json!({}))
            .await,
        403,
        "M_USER_SUSPENDED",
        "a suspended account creates a room",
    );
    assert_ok(
        &s.get("/_matrix/client/v3/sync", Some(bt)).await,
        "a suspended account syncs",
    );
    assert_ok(
        &s.post(&room_path(&room, "leave"), Some(bt), &json!({}))
            .await,
        "and leaves",
    );
    assert_ok(
        &s.put(
            &suspend(&bob.user_id),
            Some(&root),
            &json!({ "suspended": false }),
        )
        .await,
        "lift the suspension",
    );
    assert_ok(
        &s.post("/_matrix/client/v3/createRoom", Some(bt), &json!({}))
            .await,
        "bob acts again",
    );

    // Locked: nothing is served, the session survives (soft logout), login is refused.
    assert_ok(
        &s.put(&lock(&bob.user_id), Some(&root), &json!({ "locked": true }))
            .await,
        "lock bob",
    );
    let refused = s.get("/_matrix/client/v3/account/whoami", Some(bt)).await;
    assert_err(&refused, 401, "M_USER_LOCKED", "a locked account's request");
    assert_eq!(refused.1["soft_logout"], json!(true));
    assert_err(
        &s.login_attempt("bob", PW).await,
        401,
        "M_USER_LOCKED",
        "a locked account logs in",
    );
    assert_ok(
        &s.put(
            &lock(&bob.user_id),
            Some(&root),
            &json!({ "locked": false }),
        )
        .await,
        "unlock",
    );
    assert_ok(
        &s.get("/_matrix/client/v3/account/whoami", Some(bt)).await,
        "the old session works again",
    );
}

#[tokio::test]
async fn a_login_token_logs_in_once() {
    let s = TestServer::start().await;
    let alice = register(&s, "alice").await;
    let at = alice.token().expect("token");
    let flows = s.get("/_matrix/client/v3/login", None).await;
    assert!(flows.1["flows"]
        .as_array()
        .expect("flows")
        .iter()
        .any(|f| f["type"] == "m.login.token" && f["get_login_token"] == true));

    let (status, challenge) = s
        .post("/_matrix/client/v1/login/get_token", Some(at), &json!({}))
        .await;
    assert_eq!(status, 401, "UIA first: {challenge}");
    let auth = json!({
        "type": "m.login.password",
        "identifier": { "type": "m.id.user", "user": alice.user_id },
        "password": PW,
        "session": challenge["session"],
    });
    let (status, issued) = s
        .post(
            "/_matrix/client/v1/login/get_token",
            Some(at),
            &json!({ "auth": auth }),
        )
        .await;
    assert_eq!(status, 200, "{issued}");
    assert_eq!(issued["expires_in_ms"], json!(120_000));
    let token = issued["login_token"].as_str().expect("login_token");

    let login = json!({ "type": "m.login.token", "token": token });
    let (status, session) = s.post("/_matrix/client/v3/login", None, &login).await;
    assert_eq!(status, 200, "{session}");
    assert_eq!(session["user_id"], json!(alice.user_id));
    assert_ne!(session["device_id"], json!(alice.device_id));
    assert_err(
        &s.post("/_matrix/client/v3/login", None, &login).await,
        403,
        "M_FORBIDDEN",
        "the same token again",
    );
    assert_err(
        &s.post(
            "/_matrix/client/v3/login",
            None,
            &json!({ "type": "m.login.token", "token": "made-up" }),
        )
        .await,
        403,
        "M_FORBIDDEN",
        "a made-up token",
    );
}
