//! `myelin db copy`: a server filled through the API on SQLite is copied to PostgreSQL, started
//! there, and serves the same users, rooms, state, history and account data; then copied back to
//! a new SQLite file, which serves them too.
//!
//! Needs `MYELIN_TEST_POSTGRES_URL` (skipped loudly without it).

use myelin::storage::copy::copy;
use myelin::storage::Backend;
use myelin_storage_postgres::testing::TestDatabase;
use myelin_testing::http::C;
use myelin_testing::{enc, Account, StatusCode, TestServer};
use serde_json::{json, Value};

async fn get_ok(server: &TestServer, path: &str, account: &Account) -> Value {
    let (status, body) = server.get(path, account.token()).await;
    assert_eq!(status, StatusCode::OK, "GET {path}: {body}");
    body
}

async fn upload(server: &TestServer, account: &Account, bytes: &[u8]) -> String {
    let response = reqwest::Client::new()
        .post(format!("{}/_matrix/media/v3/upload", server.base_url()))
        .bearer_auth(&account.access_token)
        .body(bytes.to_vec())
        .send()
        .await
        .expect("upload");
    let body: Value = response.json().await.expect("upload answer");
    body["content_uri"]
        .as_str()
        .expect("content_uri")
        .to_owned()
}

/// `kept` downloads with its bytes, the quarantined `hidden` answers 404.
async fn assert_media(server: &TestServer, account: &Account, kept: &str, hidden: &str) {
    let get = |uri: &str| {
        let url = format!(
            "{}/_matrix/client/v1/media/download/{}",
            server.base_url(),
            &uri["mxc://".len()..]
        );
        reqwest::Client::new()
            .get(url)
            .bearer_auth(&account.access_token)
            .send()
    };
    let response = get(kept).await.expect("download");
    assert_eq!(response.status(), StatusCode::OK, "the copied media");
    let body = response.bytes().await.expect("body");
    assert_eq!(&body[..], b"a file to keep");
    let response = get(hidden).await.expect("download");
    assert_eq!(
        response.status(),
        StatusCode::NOT_FOUND,
        "still quarantined"
    );
}

/// What `account` sees: joined rooms with their state and full history, account data, profile.
async fn view(server: &TestServer, account: &Account) -> Value {
    let joined = get_ok(server, &format!("{C}/joined_rooms"), account).await;
    let mut rooms: Vec<String> = joined["joined_rooms"]
        .as_array()
        .expect("joined_rooms")
        .iter()
        .map(|r| r.as_str().expect("room ID").to_owned())
        .collect();
    rooms.sort();
    let pick = |e: &Value| {
        json!([
            e["event_id"],
            e["type"],
            e["state_key"],
            e["sender"],
            e["content"]
        ])
    };
    let mut out = json!({});
    for room in &rooms {
        let state = get_ok(server, &format!("{C}/rooms/{}/state", enc(room)), account).await;
        let mut state: Vec<Value> = state
            .as_array()
            .expect("state array")
            .iter()
            .map(pick)
            .collect();
        state.sort_by_key(|v| v.to_string());
        let messages = get_ok(
            server,
            &format!("{C}/rooms/{}/messages?dir=b&limit=1000", enc(room)),
            account,
        )
        .await;
        let history: Vec<Value> = messages["chunk"]
            .as_array()
            .expect("chunk")
            .iter()
            .map(pick)
            .collect();
        let room_data = server
            .get(
                &format!(
                    "{C}/user/{}/rooms/{}/account_data/org.example.room",
                    enc(&account.user_id),
                    enc(room)
                ),
                account.token(),
            )
            .await
            .1;
        out[room] = json!({"state": state, "history": history, "account_data": room_data});
    }
    let global = server
        .get(
            &format!(
                "{C}/user/{}/account_data/org.example.global",
                enc(&account.user_id)
            ),
            account.token(),
        )
        .await
        .1;
    let profile = get_ok(
        server,
        &format!("{C}/profile/{}", enc(&account.user_id)),
        account,
    )
    .await;
    let notifications = get_ok(server, &format!("{C}/notifications"), account).await;
    let notifications: Vec<Value> = notifications["notifications"]
        .as_array()
        .expect("notifications")
        .iter()
        .map(|n| json!([n["event"]["event_id"], n["read"], n["actions"]]))
        .collect();
    let pushers = get_ok(server, &format!("{C}/pushers"), account).await;
    json!({
        "rooms": out, "global": global, "profile": profile,
        "notifications": notifications, "pushers": pushers["pushers"],
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_copied_to_postgres_and_back_serves_the_same_data() {
    let Some(pg) = TestDatabase::create().await else {
        return;
    };
    let sqlite = |c: &mut myelin::Config| {
        c.database.backend = "sqlite".into();
        c.database.url = None;
    };

    // Fill a server on SQLite through the API.
    let server = TestServer::start_with(sqlite).await;
    let alice = server.register("alice", "alice-pw").await;
    let bob = server.register("bob", "bob-pw").await;
    let shared = server
        .create_room(
            alice.access_token.as_str(),
            &json!({"name": "Copy me", "topic": "all of it", "preset": "private_chat"}),
        )
        .await;
    server
        .invite(&alice.access_token, &shared, &bob.user_id)
        .await;
    server.join(&bob.access_token, &shared).await;
    for i in 0..7 {
        server
            .send_message(
                &alice.access_token,
                &shared,
                &format!("a{i}"),
                &format!("from alice {i}"),
            )
            .await;
        server
            .send_message(
                &bob.access_token,
                &shared,
                &format!("b{i}"),
                &format!("from bob {i}"),
            )
            .await;
    }
    let bobs_room = server
        .create_room(&bob.access_token, &json!({"name": "Bob only"}))
        .await;
    server
        .send_message(&bob.access_token, &bobs_room, "solo", "just me")
        .await;
    for (account, value) in [(&alice, 1), (&bob, 2)] {
        let path = format!(
            "{C}/user/{}/account_data/org.example.global",
            enc(&account.user_id)
        );
        let (status, body) = server
            .put(&path, account.token(), &json!({"v": value}))
            .await;
        assert_eq!(status, StatusCode::OK, "{body}");
        let path = format!(
            "{C}/user/{}/rooms/{}/account_data/org.example.room",
            enc(&account.user_id),
            enc(&shared)
        );
        let (status, body) = server
            .put(&path, account.token(), &json!({"room": value}))
            .await;
        assert_eq!(status, StatusCode::OK, "{body}");
    }
    let path = format!("{C}/profile/{}/displayname", enc(&bob.user_id));
    let (status, body) = server
        .put(&path, bob.token(), &json!({"displayname": "Bob B."}))
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let pusher = json!({
        "kind": "http", "app_id": "org.example.app", "pushkey": "bobs-phone",
        "app_display_name": "Example", "device_display_name": "Phone", "lang": "en",
        "data": {"url": "https://push.example.org/_matrix/push/v1/notify"},
    });
    let (status, body) = server
        .post(&format!("{C}/pushers/set"), bob.token(), &pusher)
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let before = [view(&server, &alice).await, view(&server, &bob).await];
    // Bob's invite and Alice's seven messages.
    assert_eq!(before[1]["notifications"].as_array().unwrap().len(), 8);
    assert_eq!(before[1]["pushers"].as_array().unwrap().len(), 1);
    assert_eq!(before[1]["rooms"].as_object().unwrap().len(), 2);
    // Media: the metadata is copied, the files stay in the data dir; so is a quarantine.
    let kept = upload(&server, &alice, b"a file to keep").await;
    let hidden = upload(&server, &alice, b"a quarantined file").await;
    myelin::media::run(
        server.config().clone(),
        myelin::media::MediaCommand::Quarantine {
            uri: hidden.clone(),
        },
    )
    .await
    .expect("quarantine");

    // Copy the stopped server's database to PostgreSQL (small batches), and refuse a second copy.
    let data_dir = server.stop().await;
    let sqlite_file = Backend::Sqlite(data_dir.path().join("myelin.db"));
    let postgres = Backend::Postgres {
        url: pg.url().to_owned(),
        pool_size: 2,
    };
    let counts = copy(&sqlite_file, &postgres, 3, false)
        .await
        .expect("copy to PostgreSQL");
    let events = counts
        .iter()
        .find(|(t, _)| *t == "events")
        .expect("events copied")
        .1;
    assert!(events > 20, "copied {events} events");
    let again = copy(&sqlite_file, &postgres, 3, false)
        .await
        .expect_err("a non-empty target is refused");
    assert!(format!("{again:#}").contains("not empty"), "{again:#}");

    // Start on PostgreSQL: everyone logs in with their password and sees the same things.
    let url = pg.url().to_owned();
    let on_postgres = move |c: &mut myelin::Config| {
        c.database.backend = "postgres".into();
        c.database.url = Some(url);
    };
    let server = TestServer::restart_with(data_dir, on_postgres).await;
    let alice = server.login("alice", "alice-pw").await;
    let bob = server.login("bob", "bob-pw").await;
    assert_eq!(
        view(&server, &alice).await,
        before[0],
        "alice's view on PostgreSQL"
    );
    assert_eq!(
        view(&server, &bob).await,
        before[1],
        "bob's view on PostgreSQL"
    );
    assert_media(&server, &alice, &kept, &hidden).await;
    // Writing goes on where SQLite left off.
    let new_event = server
        .send_message(&alice.access_token, &shared, "pg1", "written on PostgreSQL")
        .await;
    let path = format!("{C}/rooms/{}/messages?dir=b&limit=1", enc(&shared));
    let latest = get_ok(&server, &path, &alice).await;
    assert_eq!(latest["chunk"][0]["event_id"], json!(new_event));
    let after_pg = [view(&server, &alice).await, view(&server, &bob).await];

    // And back to a new SQLite file.
    let data_dir = server.stop().await;
    let back = data_dir.path().join("copied-back.db");
    copy(&postgres, &Backend::Sqlite(back.clone()), 5, false)
        .await
        .expect("copy back to SQLite");
    let server = TestServer::restart_with(data_dir, move |c| {
        c.database.backend = "sqlite".into();
        c.database.url = None;
        c.database.path = Some(back);
    })
    .await;
    let alice = server.login("alice", "alice-pw").await;
    let bob = server.login("bob", "bob-pw").await;
    assert_eq!(
        view(&server, &alice).await,
        after_pg[0],
        "alice's view after the round trip"
    );
    assert_eq!(
        view(&server, &bob).await,
        after_pg[1],
        "bob's view after the round trip"
    );
    assert_media(&server, &alice, &kept, &hidden).await;
    server.stop().await;
}
