//! E-mail pushers against an SMTP sink: only a validated address of the account may be the
//! pushkey, and after the configured delay one digest carries what is still unread, leaving out
//! rooms read meanwhile.

use myelin_testing::http::{assert_err, assert_ok, room_path, PW};
use myelin_testing::smtp::SmtpSink;
use myelin_testing::{enc, Account, TestServer};
use serde_json::{json, Value};

const C: &str = "/_matrix/client/v3";

/// Validates `email` through the mailed token and binds it to the account.
async fn bind_email(s: &TestServer, sink: &mut SmtpSink, who: &Account, email: &str) {
    let secret = "push-secret";
    let (status, started) = s
        .post(
            &format!("{C}/account/3pid/email/requestToken"),
            None,
            &json!({ "client_secret": secret, "email": email, "send_attempt": 1 }),
        )
        .await;
    assert_eq!(status, 200, "{started}");
    let text = sink.next_mail().await.text();
    let token = text
        .split("token=")
        .nth(1)
        .and_then(|rest| rest.split_whitespace().next())
        .expect("a token in the validation mail")
        .to_owned();
    let creds = json!({ "sid": started["sid"], "client_secret": secret, "token": token });
    s.post("/_myelin/client/email/submit_token", None, &creds)
        .await;
    let add = |session: Option<&Value>| {
        let mut body = json!({ "sid": started["sid"], "client_secret": secret });
        if let Some(session) = session {
            body["auth"] = json!({
                "type": "m.login.password", "password": PW, "session": session,
                "identifier": { "type": "m.id.user", "user": who.user_id },
            });
        }
        async move {
            s.post(&format!("{C}/account/3pid/add"), who.token(), &body)
                .await
        }
    };
    let (_, challenge) = add(None).await;
    assert_ok(&add(Some(&challenge["session"])).await, "bind the address");
}

fn email_pusher(address: &str) -> Value {
    json!({
        "kind": "email", "app_id": "m.email", "pushkey": address,
        "app_display_name": "Email", "device_display_name": address, "lang": "en",
        "data": { "brand": "Myelin tests" },
    })
}

async fn say(s: &TestServer, who: &Account, room: &str, txn: &str, body: &str) -> String {
    let path = room_path(room, &format!("send/m.room.message/{txn}"));
    let (status, answer) = s
        .put(
            &path,
            who.token(),
            &json!({"msgtype": "m.text", "body": body}),
        )
        .await;
    assert_eq!(status, 200, "send: {answer}");
    answer["event_id"].as_str().expect("event_id").to_owned()
}

/// A room Alice created with Bob joined, named `name`.
async fn room_with_bob(s: &TestServer, alice: &Account, bob: &Account, name: &str) -> String {
    let room = s
        .create_room(&alice.access_token, &json!({ "name": name }))
        .await;
    s.invite(&alice.access_token, &room, &bob.user_id).await;
    s.join(&bob.access_token, &room).await;
    room
}

#[tokio::test]
async fn an_email_pusher_mails_a_digest_of_what_is_still_unread() {
    let mut sink = SmtpSink::start().await;
    let port = sink.port;
    let s = TestServer::start_with(|c| {
        c.smtp.host = Some("127.0.0.1".into());
        c.smtp.port = port;
        c.smtp.tls = myelin::SmtpTls::None;
        // Long enough for Bob to read the first room before the digest is due.
        c.smtp.notification_delay_ms = 1_500;
    })
    .await;
    let alice = s.register("alice", PW).await;
    let bob = s.register("bob", PW).await;
    bind_email(&s, &mut sink, &bob, "bob@example.org").await;

    // Only a bound address can be a pushkey.
    assert_err(
        &s.post(
            &format!("{C}/pushers/set"),
            bob.token(),
            &email_pusher("someone-else@example.org"),
        )
        .await,
        400,
        "M_THREEPID_NOT_FOUND",
        "an address that is not Bob's",
    );
    let read_room = room_with_bob(&s, &alice, &bob, "Read soon").await;
    let unread_room = room_with_bob(&s, &alice, &bob, "Left unread").await;
    assert_ok(
        &s.post(
            &format!("{C}/pushers/set"),
            bob.token(),
            &email_pusher("bob@example.org"),
        )
        .await,
        "set the e-mail pusher",
    );
    let (_, pushers) = s.get(&format!("{C}/pushers"), bob.token()).await;
    assert_eq!(pushers["pushers"][0]["kind"], "email", "{pushers}");

    let seen = say(&s, &alice, &read_room, "t1", "this one Bob reads at once").await;
    let path = room_path(&read_room, &format!("receipt/m.read/{}", enc(&seen)));
    assert_ok(
        &s.post(&path, bob.token(), &json!({})).await,
        "read receipt",
    );
    say(&s, &alice, &unread_room, "t2", "are you there, Bob?").await;

    let mail = sink.next_mail().await;
    assert_eq!(mail.to, ["bob@example.org"]);
    let text = mail.text();
    assert!(
        text.contains("Subject: [Myelin tests] 1 unread message in Left unread"),
        "{text}"
    );
    assert!(text.contains(": are you there, Bob?"), "{text}");
    assert!(!text.contains("Bob reads at once"), "{text}");
}

#[tokio::test]
async fn without_smtp_there_are_no_email_pushers() {
    let s = TestServer::start().await;
    let bob = s.register("bob", PW).await;
    assert_err(
        &s.post(
            &format!("{C}/pushers/set"),
            bob.token(),
            &email_pusher("bob@example.org"),
        )
        .await,
        400,
        "M_INVALID_PARAM",
        "an e-mail pusher without SMTP",
    );
}
