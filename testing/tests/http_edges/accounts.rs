//! Accounts: registration (open, closed, with tokens), login and logout, devices,
//! password changes, deactivation and refresh tokens.

use myelin::config::RegistrationMode;
use myelin_testing::http::{assert_err, assert_ok, errcode, password_auth, room_path, C, PW};
use myelin_testing::{enc, has_flow_stage, Account, StatusCode, TestServer};
use serde_json::{json, Value};

/// Runs a UIA-protected POST with `m.login.password`.
async fn post_with_password(
    s: &TestServer,
    path: &str,
    who: &Account,
    password: &str,
    body: Value,
) -> (StatusCode, Value) {
    let (st, uia) = s.post(path, who.token(), &body).await;
    assert_eq!(
        st,
        StatusCode::UNAUTHORIZED,
        "{path} must require UIA: {uia}"
    );
    assert!(has_flow_stage(&uia, "m.login.password"), "{uia}");
    let mut body = body;
    body["auth"] = password_auth(&who.user_id, password, Some(&uia["session"]));
    s.post(path, who.token(), &body).await
}

#[tokio::test]
async fn registration_user_in_use_and_invalid_username() {
    let s = TestServer::start().await;
    let alice = s.register("alice", PW).await;
    assert!(
        alice.user_id.starts_with("@alice:"),
        "user id {}",
        alice.user_id
    );

    let resp = s
        .register_attempt(json!({ "username": "alice", "password": PW }))
        .await;
    assert_err(&resp, 400, "M_USER_IN_USE", "registering alice twice");

    for bad in ["bad user", "with:colon", "emoji\u{1F600}"] {
        let resp = s
            .register_attempt(json!({ "username": bad, "password": PW }))
            .await;
        assert_err(
            &resp,
            400,
            "M_INVALID_USERNAME",
            &format!("registering {bad:?}"),
        );
    }
}

#[tokio::test]
async fn register_available() {
    let s = TestServer::start().await;
    s.register("alice", PW).await;

    let resp = s
        .get(&format!("{C}/register/available?username=fresh"), None)
        .await;
    assert_ok(&resp, "available fresh");
    assert_eq!(resp.1["available"], true, "{}", resp.1);

    let resp = s
        .get(&format!("{C}/register/available?username=alice"), None)
        .await;
    assert_err(&resp, 400, "M_USER_IN_USE", "available alice");

    let resp = s
        .get(
            &format!("{C}/register/available?username={}", enc("bad user")),
            None,
        )
        .await;
    assert_err(&resp, 400, "M_INVALID_USERNAME", "available 'bad user'");
}

#[tokio::test]
async fn registration_closed() {
    let s = TestServer::start_with(|c| c.registration.mode = RegistrationMode::Closed).await;
    let resp = s
        .register_attempt(json!({ "username": "alice", "password": PW }))
        .await;
    assert_err(&resp, 403, "M_FORBIDDEN", "registration while closed");
    assert_err(
        &s.login_attempt("alice", PW).await,
        403,
        "M_FORBIDDEN",
        "login of never-created user",
    );
}

#[tokio::test]
async fn registration_with_token() {
    let s = TestServer::start_with(|c| {
        c.registration.mode = RegistrationMode::Token;
        c.registration.tokens = vec!["let-me-in".to_owned()];
    })
    .await;
    let register = format!("{C}/register");
    let base = json!({ "username": "tok", "password": PW });

    let (st, uia) = s.post(&register, None, &base).await;
    assert_eq!(
        st,
        StatusCode::UNAUTHORIZED,
        "first request starts UIA: {uia}"
    );
    let session = uia["session"].as_str().expect("session").to_owned();
    let flows = uia["flows"].as_array().expect("flows");
    assert!(!flows.is_empty(), "{uia}");
    for flow in flows {
        assert!(
            flow["stages"]
                .as_array()
                .unwrap()
                .iter()
                .any(|s| s == "m.login.registration_token"),
            "every flow must require the registration token: {uia}"
        );
    }

    // Dummy auth alone must not be enough.
    let mut dummy = base.clone();
    dummy["auth"] = json!({ "type": "m.login.dummy", "session": session });
    let (st, body) = s.post(&register, None, &dummy).await;
    assert_ne!(
        st,
        StatusCode::OK,
        "dummy auth bypassed the token requirement: {body}"
    );

    // A wrong token is refused.
    let mut wrong = base.clone();
    wrong["auth"] =
        json!({ "type": "m.login.registration_token", "token": "nope", "session": session });
    let (st, body) = s.post(&register, None, &wrong).await;
    assert_eq!(st, StatusCode::UNAUTHORIZED, "wrong token: {body}");
    assert!(
        !body["completed"]
            .as_array()
            .is_some_and(|c| c.iter().any(|s| s == "m.login.registration_token")),
        "wrong token marked as completed: {body}"
    );

    // The right token, followed by any remaining stages (only dummy is expected).
    let mut auth =
        json!({ "type": "m.login.registration_token", "token": "let-me-in", "session": session });
    let mut result = None;
    for _ in 0..4 {
        let mut req = base.clone();
        req["auth"] = auth.clone();
        let (st, body) = s.post(&register, None, &req).await;
        if st == StatusCode::OK {
            result = Some(body);
            break;
        }
        assert_eq!(st, StatusCode::UNAUTHORIZED, "unexpected UIA step: {body}");
        assert!(
            has_flow_stage(&body, "m.login.dummy"),
            "unexpected remaining stages: {body}"
        );
        auth = json!({ "type": "m.login.dummy", "session": session });
    }
    let body = result.expect("registration with a valid token did not complete");
    assert!(
        body["user_id"].as_str().unwrap().starts_with("@tok:"),
        "{body}"
    );
    let token = body["access_token"].as_str().expect("access_token");
    let (st, who) = s.get(&format!("{C}/account/whoami"), Some(token)).await;
    assert_eq!(st, StatusCode::OK, "{who}");
}

#[tokio::test]
async fn registration_token_validity_endpoint() {
    let s = TestServer::start_with(|c| {
        c.registration.mode = RegistrationMode::Token;
        c.registration.tokens = vec!["let-me-in".to_owned()];
    })
    .await;
    let path = "/_matrix/client/v1/register/m.login.registration_token/validity";
    let resp = s.get(&format!("{path}?token=let-me-in"), None).await;
    assert_ok(&resp, "validity of a good token");
    assert_eq!(resp.1["valid"], true, "{}", resp.1);
    let resp = s.get(&format!("{path}?token=nope"), None).await;
    assert_ok(&resp, "validity of a bad token");
    assert_eq!(resp.1["valid"], false, "{}", resp.1);
}

#[tokio::test]
async fn register_with_inhibit_login() {
    let s = TestServer::start().await;
    let (st, body) = s
        .register_attempt(json!({ "username": "quiet", "password": PW, "inhibit_login": true }))
        .await;
    assert_eq!(st, StatusCode::OK, "{body}");
    assert!(
        body["user_id"]
            .as_str()
            .is_some_and(|u| u.starts_with("@quiet:")),
        "{body}"
    );
    assert!(
        body.get("access_token").is_none(),
        "inhibit_login must not return a token: {body}"
    );
    s.login("quiet", PW).await;
}

#[tokio::test]
async fn register_generates_username_and_names_the_device() {
    let s = TestServer::start().await;
    let (st, body) = s
        .register_attempt(json!({
            "password": PW,
            "device_id": "MYDEVICE",
            "initial_device_display_name": "Laptop",
        }))
        .await;
    assert_eq!(st, StatusCode::OK, "registration without username: {body}");
    let user_id = body["user_id"].as_str().expect("user_id");
    assert!(
        user_id.starts_with('@') && user_id.ends_with(":localhost"),
        "{body}"
    );
    assert_eq!(body["device_id"], "MYDEVICE", "{body}");
    let token = body["access_token"].as_str().unwrap();
    let (st, device) = s.get(&format!("{C}/devices/MYDEVICE"), Some(token)).await;
    assert_eq!(st, StatusCode::OK, "{device}");
    assert_eq!(device["display_name"], "Laptop", "{device}");
}

#[tokio::test]
async fn login_whoami_and_logout() {
    let s = TestServer::start().await;
    let alice = s.register("alice", PW).await;

    assert_err(
        &s.login_attempt("alice", "wrong password").await,
        403,
        "M_FORBIDDEN",
        "wrong password",
    );
    assert_err(
        &s.login_attempt("nobody", PW).await,
        403,
        "M_FORBIDDEN",
        "unknown user",
    );

    let (st, flows) = s.get(&format!("{C}/login"), None).await;
    assert_eq!(st, StatusCode::OK, "{flows}");
    assert!(
        flows["flows"]
            .as_array()
            .unwrap()
            .iter()
            .any(|f| f["type"] == "m.login.password"),
        "GET /login must offer m.login.password: {flows}"
    );

    let second = s.login("alice", PW).await;
    assert_eq!(second.user_id, alice.user_id);

    for acct in [&alice, &second] {
        let (st, who) = s.get(&format!("{C}/account/whoami"), acct.token()).await;
        assert_eq!(st, StatusCode::OK, "{who}");
        assert_eq!(who["user_id"], acct.user_id.as_str());
        assert_eq!(who["device_id"], acct.device_id.as_str());
    }

    assert_ok(
        &s.post(&format!("{C}/logout"), second.token(), &json!({}))
            .await,
        "logout",
    );
    let resp = s.get(&format!("{C}/account/whoami"), second.token()).await;
    assert_err(&resp, 401, "M_UNKNOWN_TOKEN", "whoami after logout");

    // The other session is untouched, and the logged-out device is gone.
    assert_ok(
        &s.get(&format!("{C}/account/whoami"), alice.token()).await,
        "first device still works",
    );
    let (_, devices) = s.get(&format!("{C}/devices"), alice.token()).await;
    let listed: Vec<&str> = devices["devices"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["device_id"].as_str().unwrap())
        .collect();
    assert_eq!(listed, vec![alice.device_id.as_str()], "{devices}");
}

#[tokio::test]
async fn login_with_full_user_id_and_logout_all() {
    let s = TestServer::start().await;
    let alice = s.register("alice", PW).await;
    let by_mxid = s.login(&alice.user_id, PW).await;
    assert_eq!(by_mxid.user_id, alice.user_id);
    let third = s.login("alice", PW).await;

    assert_ok(
        &s.post(&format!("{C}/logout/all"), third.token(), &json!({}))
            .await,
        "logout/all",
    );
    for acct in [&alice, &by_mxid, &third] {
        let resp = s.get(&format!("{C}/account/whoami"), acct.token()).await;
        assert_err(
            &resp,
            401,
            "M_UNKNOWN_TOKEN",
            &format!("device {} after logout/all", acct.device_id),
        );
    }
    let fresh = s.login("alice", PW).await;
    let (_, devices) = s.get(&format!("{C}/devices"), fresh.token()).await;
    assert_eq!(
        devices["devices"].as_array().map(Vec::len),
        Some(1),
        "{devices}"
    );
}

#[tokio::test]
async fn devices_list_rename_delete() {
    let s = TestServer::start().await;
    let alice = s.register("alice", PW).await;
    let phone = s.login("alice", PW).await;

    let (st, devices) = s.get(&format!("{C}/devices"), alice.token()).await;
    assert_eq!(st, StatusCode::OK, "{devices}");
    let mut listed: Vec<String> = devices["devices"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["device_id"].as_str().unwrap().to_owned())
        .collect();
    listed.sort();
    let mut expected = vec![alice.device_id.clone(), phone.device_id.clone()];
    expected.sort();
    assert_eq!(listed, expected, "{devices}");

    let device_path = format!("{C}/devices/{}", enc(&phone.device_id));
    assert_ok(
        &s.put(
            &device_path,
            alice.token(),
            &json!({ "display_name": "Phone" }),
        )
        .await,
        "rename",
    );
    let (st, device) = s.get(&device_path, alice.token()).await;
    assert_eq!(st, StatusCode::OK, "{device}");
    assert_eq!(device["display_name"], "Phone");
    assert_eq!(device["device_id"], phone.device_id.as_str());

    // Deleting needs UIA with m.login.password.
    let (st, uia) = s.delete(&device_path, alice.token(), &json!({})).await;
    assert_eq!(
        st,
        StatusCode::UNAUTHORIZED,
        "delete without auth must start UIA: {uia}"
    );
    assert!(has_flow_stage(&uia, "m.login.password"), "{uia}");
    let session = uia["session"].clone();
    let password_auth = |password: &str| {
        json!({ "auth": {
            "type": "m.login.password",
            "identifier": { "type": "m.id.user", "user": alice.user_id },
            "password": password,
            "session": session,
        }})
    };

    let (st, body) = s
        .delete(&device_path, alice.token(), &password_auth("wrong"))
        .await;
    assert_eq!(
        st,
        StatusCode::UNAUTHORIZED,
        "wrong password in UIA: {body}"
    );
    assert_eq!(errcode(&body), "M_FORBIDDEN", "{body}");
    assert_ok(
        &s.get(&device_path, alice.token()).await,
        "device survives a failed delete",
    );

    assert_ok(
        &s.delete(&device_path, alice.token(), &password_auth(PW))
            .await,
        "delete with password",
    );
    assert_err(
        &s.get(&device_path, alice.token()).await,
        404,
        "M_NOT_FOUND",
        "deleted device",
    );
    let resp = s.get(&format!("{C}/account/whoami"), phone.token()).await;
    assert_err(&resp, 401, "M_UNKNOWN_TOKEN", "token of the deleted device");
}

#[tokio::test]
async fn change_password_logs_out_other_devices() {
    let s = TestServer::start().await;
    let alice = s.register("alice", PW).await;
    let other = s.login("alice", PW).await;

    let resp = post_with_password(
        &s,
        &format!("{C}/account/password"),
        &alice,
        PW,
        json!({ "new_password": "n3w-pass" }),
    )
    .await;
    assert_ok(&resp, "change password");
    assert_err(
        &s.login_attempt("alice", PW).await,
        403,
        "M_FORBIDDEN",
        "login with the old password",
    );
    s.login("alice", "n3w-pass").await;
    assert_ok(
        &s.get(&format!("{C}/account/whoami"), alice.token()).await,
        "the requesting device stays",
    );
    let resp = s.get(&format!("{C}/account/whoami"), other.token()).await;
    assert_err(
        &resp,
        401,
        "M_UNKNOWN_TOKEN",
        "other device after a password change",
    );
}

#[tokio::test]
async fn deactivated_account_is_gone_for_good() {
    let s = TestServer::start().await;
    let alice = s.register("alice", PW).await;
    let room = s.create_room(&alice.access_token, &json!({})).await;

    let resp = post_with_password(
        &s,
        &format!("{C}/account/deactivate"),
        &alice,
        PW,
        json!({}),
    )
    .await;
    assert_ok(&resp, "deactivate");
    assert_err(
        &s.get(&format!("{C}/account/whoami"), alice.token()).await,
        401,
        "M_UNKNOWN_TOKEN",
        "old token",
    );
    assert_err(
        &s.login_attempt("alice", PW).await,
        403,
        "M_USER_DEACTIVATED",
        "login after deactivation",
    );
    let resp = s
        .register_attempt(json!({ "username": "alice", "password": PW }))
        .await;
    assert_err(
        &resp,
        400,
        "M_USER_IN_USE",
        "re-registering a deactivated name",
    );

    // The deactivated user left their rooms.
    let bob = s.register("bob", PW).await;
    let (st, members) = s.get(&room_path(&room, "members"), bob.token()).await;
    if st == StatusCode::OK {
        let alice_member = members["chunk"]
            .as_array()
            .unwrap()
            .iter()
            .find(|e| e["state_key"] == alice.user_id.as_str())
            .cloned()
            .unwrap_or_default();
        assert_eq!(alice_member["content"]["membership"], "leave", "{members}");
    }
}

#[tokio::test]
async fn refresh_tokens() {
    let s = TestServer::start().await;
    s.register("alice", PW).await;
    let (st, login) = s
        .post(
            &format!("{C}/login"),
            None,
            &json!({
                "type": "m.login.password",
                "identifier": { "type": "m.id.user", "user": "alice" },
                "password": PW,
                "refresh_token": true,
            }),
        )
        .await;
    assert_eq!(st, StatusCode::OK, "{login}");
    let refresh = login["refresh_token"]
        .as_str()
        .unwrap_or_else(|| panic!("no refresh_token: {login}"))
        .to_owned();
    assert!(
        login["expires_in_ms"].as_u64().is_some_and(|ms| ms > 0),
        "{login}"
    );

    let (st, renewed) = s
        .post(
            &format!("{C}/refresh"),
            None,
            &json!({ "refresh_token": refresh }),
        )
        .await;
    assert_eq!(st, StatusCode::OK, "{renewed}");
    let new_access = renewed["access_token"]
        .as_str()
        .expect("access_token")
        .to_owned();
    assert_ne!(new_access, login["access_token"].as_str().unwrap());
    let (st, who) = s
        .get(&format!("{C}/account/whoami"), Some(&new_access))
        .await;
    assert_eq!(st, StatusCode::OK, "{who}");
    assert_eq!(
        who["device_id"], login["device_id"],
        "refresh keeps the device"
    );

    let resp = s
        .post(
            &format!("{C}/refresh"),
            None,
            &json!({ "refresh_token": "not-a-refresh-token" }),
        )
        .await;
    assert_err(&resp, 401, "M_UNKNOWN_TOKEN", "unknown refresh token");
}
