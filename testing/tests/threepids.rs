//! E-mail addresses (3PIDs) over HTTP with an SMTP sink: validation by the mailed link and by
//! `submit_url`, adding, listing and deleting addresses, a password reset by e-mail,
//! registration that requires an address (one account per address, even for registrations at
//! once), and the spec's errors.

use myelin_testing::http::{assert_err, assert_ok, register, PW};
use myelin_testing::smtp::{Mail, SmtpSink};
use myelin_testing::{Config, TestServer};
use serde_json::{json, Value};

fn mail_to(config: &mut Config, sink: &SmtpSink) {
    config.smtp.host = Some("127.0.0.1".into());
    config.smtp.port = sink.port;
    config.smtp.tls = myelin::SmtpTls::None;
    config.smtp.public_base_url = "http://mail-link.invalid".into();
}

/// `(sid, client_secret, token)` from the link in a validation mail.
fn link_params(mail: &Mail) -> (String, String, String) {
    let text = mail.text();
    let query = text
        .split("submit_token?")
        .nth(1)
        .and_then(|rest| rest.split_whitespace().next())
        .expect("a validation link");
    let get = |name: &str| {
        query
            .split('&')
            .find_map(|kv| kv.strip_prefix(&format!("{name}=")))
            .expect("link parameter")
            .to_owned()
    };
    (get("sid"), get("client_secret"), get("token"))
}

fn password_auth(user_id: &str, session: &Value) -> Value {
    json!({ "type": "m.login.password", "identifier": { "type": "m.id.user", "user": user_id }, "password": PW, "session": session })
}

async fn request_token(s: &TestServer, path: &str, email: &str, secret: &str) -> (u16, Value) {
    let (status, body) = s
        .post(
            &format!("/_matrix/client/v3/{path}/email/requestToken"),
            None,
            &json!({ "client_secret": secret, "email": email, "send_attempt": 1 }),
        )
        .await;
    (status.as_u16(), body)
}

#[tokio::test]
async fn addresses_are_validated_by_mail_added_and_reset_passwords() {
    let mut sink = SmtpSink::start().await;
    let s = TestServer::start_with(|c| mail_to(c, &sink)).await;
    let (alice, bob) = (register(&s, "alice").await, register(&s, "bob").await);
    let (at, bt) = (alice.token().expect("token"), bob.token().expect("token"));
    let caps = s.get("/_matrix/client/v3/capabilities", Some(at)).await;
    assert_eq!(caps.1["capabilities"]["m.3pid_changes"]["enabled"], true);

    let (status, started) =
        request_token(&s, "account/3pid", "Alice@Example.org", "secret-a").await;
    assert_eq!(status, 200, "{started}");
    let mail = sink.next_mail().await;
    assert_eq!(mail.to, ["alice@example.org"]);
    let (sid, secret, token) = link_params(&mail);
    assert_eq!(json!(sid), started["sid"]);

    let add = |auth: Option<Value>| {
        let mut body = json!({ "sid": sid, "client_secret": secret });
        if let Some(auth) = auth {
            body["auth"] = auth;
        }
        let s = &s;
        async move {
            s.post("/_matrix/client/v3/account/3pid/add", Some(at), &body)
                .await
        }
    };
    let (status, challenge) = add(None).await;
    assert_eq!(status, 401);
    assert_err(
        &add(Some(password_auth(&alice.user_id, &challenge["session"]))).await,
        403,
        "M_THREEPID_AUTH_FAILED",
        "adding before the link was followed",
    );
    // The link in the mail, followed in a browser: a plain-text page.
    let link = format!(
        "{}/_myelin/client/email/submit_token?sid={sid}&client_secret={secret}&token={token}",
        s.base_url()
    );
    let page = reqwest::get(&link).await.expect("follow the link");
    assert_eq!(page.status(), 200);
    assert!(page
        .headers()
        .get("content-type")
        .is_some_and(|t| t.to_str().unwrap_or("").starts_with("text/plain")));
    assert!(page.text().await.expect("page").contains("confirmed"));
    let (_, challenge) = add(None).await;
    assert_ok(
        &add(Some(password_auth(&alice.user_id, &challenge["session"]))).await,
        "add the validated address",
    );
    let listed = s.get("/_matrix/client/v3/account/3pid", Some(at)).await;
    assert_eq!(listed.1["threepids"][0]["address"], "alice@example.org");
    assert_eq!(listed.1["threepids"][0]["medium"], "email");

    // Taken now, for others; unknown addresses cannot reset passwords.
    let (status, body) = request_token(&s, "account/3pid", "alice@example.org", "secret-b").await;
    assert_eq!(
        (status, body["errcode"].as_str()),
        (400, Some("M_THREEPID_IN_USE"))
    );
    let (status, body) =
        request_token(&s, "account/password", "nobody@example.org", "secret-c").await;
    assert_eq!(
        (status, body["errcode"].as_str()),
        (400, Some("M_THREEPID_NOT_FOUND"))
    );
    assert_err(
        &s.post(
            "/_matrix/client/v3/account/3pid/msisdn/requestToken",
            Some(bt),
            &json!({ "client_secret": "x", "country": "GB", "phone_number": "07700900000", "send_attempt": 1 }),
        )
        .await,
        400,
        "M_THREEPID_MEDIUM_NOT_SUPPORTED",
        "phone numbers",
    );

    // A password reset by e-mail logs every device out.
    let (status, _) = request_token(&s, "account/password", "alice@example.org", "secret-r").await;
    assert_eq!(status, 200);
    let (sid, secret, token) = link_params(&sink.next_mail().await);
    s.post(
        "/_myelin/client/email/submit_token",
        None,
        &json!({ "sid": sid, "client_secret": secret, "token": token }),
    )
    .await;
    let reset = |auth: Value| {
        let body = json!({ "new_password": "a-new-password", "auth": auth });
        let s = &s;
        async move {
            s.post("/_matrix/client/v3/account/password", None, &body)
                .await
        }
    };
    let creds = json!({ "sid": sid, "client_secret": secret });
    assert_ok(
        &reset(json!({ "type": "m.login.email.identity", "threepid_creds": creds })).await,
        "reset the password by e-mail",
    );
    assert_err(
        &s.get("/_matrix/client/v3/account/whoami", Some(at)).await,
        401,
        "M_UNKNOWN_TOKEN",
        "the old session after the reset",
    );
    let again = s.login("alice", "a-new-password").await;
    let at = again.token().expect("token");

    let deleted = s
        .post(
            "/_matrix/client/v3/account/3pid/delete",
            Some(at),
            &json!({ "medium": "email", "address": "alice@example.org" }),
        )
        .await;
    assert_ok(&deleted, "delete the address");
    assert_eq!(deleted.1["id_server_unbind_result"], "no-support");
    let listed = s.get("/_matrix/client/v3/account/3pid", Some(at)).await;
    assert_eq!(listed.1["threepids"], json!([]));
    assert!(!sink.has_mail(), "no mail beyond the two validations");
}

#[tokio::test]
async fn registration_can_require_an_address() {
    let mut sink = SmtpSink::start().await;
    let s = TestServer::start_with(|c| {
        mail_to(c, &sink);
        c.registration.require_email = true;
    })
    .await;
    let (status, challenge) = s
        .post(
            "/_matrix/client/v3/register",
            None,
            &json!({ "username": "carol", "password": PW }),
        )
        .await;
    assert_eq!(status, 401);
    assert_eq!(
        challenge["flows"][0]["stages"],
        json!(["m.login.email.identity"])
    );
    let (status, _) = request_token(&s, "register", "carol@example.org", "reg-secret").await;
    assert_eq!(status, 200);
    let (sid, secret, token) = link_params(&sink.next_mail().await);
    let auth = json!({
        "type": "m.login.email.identity",
        "threepid_creds": { "sid": sid, "client_secret": secret },
        "session": challenge["session"],
    });
    let body = json!({ "username": "carol", "password": PW, "auth": auth });
    let (status, refused) = s.post("/_matrix/client/v3/register", None, &body).await;
    assert_eq!(status, 401, "not validated yet: {refused}");
    s.post(
        "/_myelin/client/email/submit_token",
        None,
        &json!({ "sid": sid, "client_secret": secret, "token": token }),
    )
    .await;
    let mut body = body;
    body["auth"]["session"] = refused["session"].clone();
    let (status, registered) = s.post("/_matrix/client/v3/register", None, &body).await;
    assert_eq!(status, 200, "{registered}");
    let token = registered["access_token"].as_str().expect("token");
    let listed = s.get("/_matrix/client/v3/account/3pid", Some(token)).await;
    assert_eq!(listed.1["threepids"][0]["address"], "carol@example.org");
}

#[tokio::test]
async fn without_smtp_there_is_no_email() {
    let s = TestServer::start().await;
    let (status, body) = request_token(&s, "register", "x@example.org", "s").await;
    assert_eq!(
        (status, body["errcode"].as_str()),
        (400, Some("M_THREEPID_MEDIUM_NOT_SUPPORTED"))
    );
}

/// A UIA session of `/register` for `username`: the 401 challenge's `session`.
async fn register_session(s: &TestServer, username: &str) -> Value {
    let (status, challenge) = s
        .post(
            "/_matrix/client/v3/register",
            None,
            &json!({ "username": username, "password": PW }),
        )
        .await;
    assert_eq!(status, 401, "{challenge}");
    challenge["session"].clone()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_registrations_with_one_address_make_one_account() {
    let mut sink = SmtpSink::start().await;
    let s = TestServer::start_with(|c| {
        mail_to(c, &sink);
        c.registration.require_email = true;
    })
    .await;
    let (status, _) = request_token(&s, "register", "race@example.org", "race-secret").await;
    assert_eq!(status, 200);
    let (sid, secret, token) = link_params(&sink.next_mail().await);
    s.post(
        "/_myelin/client/email/submit_token",
        None,
        &json!({ "sid": sid, "client_secret": secret, "token": token }),
    )
    .await;
    let body = |username: &str, session: Value| {
        json!({ "username": username, "password": PW, "auth": {
            "type": "m.login.email.identity",
            "threepid_creds": { "sid": sid, "client_secret": secret },
            "session": session,
        } })
    };
    let names = ["racer1", "racer2", "racer3"];
    let mut requests = Vec::new();
    for name in names {
        requests.push(body(name, register_session(&s, name).await));
    }
    // All at once: exactly one gets the address, the others M_THREEPID_IN_USE.
    let answers = futures_util::future::join_all(
        requests
            .iter()
            .map(|b| s.post("/_matrix/client/v3/register", None, b)),
    )
    .await;
    let winners: Vec<usize> = (0..names.len()).filter(|&i| answers[i].0 == 200).collect();
    assert_eq!(winners.len(), 1, "{answers:?}");
    for (i, (status, answer)) in answers.iter().enumerate() {
        if i != winners[0] {
            assert_eq!(
                (status.as_u16(), answer["errcode"].as_str()),
                (400, Some("M_THREEPID_IN_USE")),
                "{answer}"
            );
            // No account was left behind without its address: the name is still free.
            let path = format!(
                "/_matrix/client/v3/register/available?username={}",
                names[i]
            );
            let (status, available) = s.get(&path, None).await;
            assert_eq!(status, 200, "{} stayed taken: {available}", names[i]);
        }
    }
    let token = answers[winners[0]].1["access_token"]
        .as_str()
        .expect("token");
    let listed = s.get("/_matrix/client/v3/account/3pid", Some(token)).await;
    assert_eq!(listed.1["threepids"][0]["address"], "race@example.org");
}
