//! A real bridge on Myelin: the echo bridge in `testing/appservice/echo_bridge.py`, built on
//! mautrix (the library of the mautrix bridges, from PyPI, in the venv `scripts/synapse-venv`
//! makes). It starts (whoami, ping, its bot registered), creates a portal room when a user joins
//! an alias of its namespace, relays the user's message to a loopback "remote network" and back
//! as a puppet with the network's timestamp, receives typing, receipts and presence as ephemeral
//! events, and goes on after a Myelin restart with no transaction lost or handled twice. Skipped
//! without the venv unless `MYELIN_REQUIRE_SYNAPSE=1`, as the Synapse tests are.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::{routing::post, Json, Router};
use myelin_testing::http::{assert_ok, register, room_path, sync_until, C};
use myelin_testing::{enc, timeline, TestServer};
use serde_json::{json, Value};

const AS_TOKEN: &str = "echo-as-token";
const HS_TOKEN: &str = "echo-hs-token";
/// The remote network's clock, which the puppet's messages carry.
const REMOTE_TS: u64 = 1_500_000_000_000;

/// The remote network: records what the bridge relays and answers with an echo.
async fn remote_network() -> (String, Arc<Mutex<Vec<Value>>>) {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let record = seen.clone();
    let app = Router::new().route(
        "/send",
        post(move |Json(body): Json<Value>| {
            let record = record.clone();
            async move {
                let reply = format!("echo: {}", body["body"].as_str().unwrap_or_default());
                record.lock().unwrap().push(body);
                Json(json!({ "reply": reply, "sender": "remote_alice", "ts": REMOTE_TS }))
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    (url, seen)
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .unwrap()
        .port()
}

fn registration(dir: &Path, server_name: &str, port: u16) -> PathBuf {
    let server = server_name.replace('.', "\\.");
    let yaml = format!(
        "id: echo\nurl: http://127.0.0.1:{port}\nas_token: {AS_TOKEN}\nhs_token: {HS_TOKEN}\n\
         sender_localpart: echobot\nrate_limited: false\n\
         namespaces:\n  users:\n    - regex: '@echo_.*:{server}'\n      exclusive: true\n\
         \x20 aliases:\n    - regex: '#echo_.*:{server}'\n      exclusive: true\n  rooms: []\n\
         de.sorunome.msc2409.push_ephemeral: true\nreceive_ephemeral: true\n"
    );
    let path = dir.join("echo-registration.yaml");
    std::fs::write(&path, yaml).unwrap();
    path
}

/// The bridge's journal, one JSON object a line.
fn journal(path: &Path) -> Vec<Value> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect()
}

/// Waits until the journal has an entry for which `check` holds (the bridge writes it).
async fn journal_until(path: &Path, what: &str, check: impl Fn(&Value) -> bool) -> Value {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if let Some(entry) = journal(path).into_iter().find(|e| check(e)) {
            return entry;
        }
        assert!(
            Instant::now() < deadline,
            "the bridge never journaled {what}: {:#?}",
            journal(path)
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The echo of `body` by the puppet, once it is in the user's timeline.
async fn echo_of(
    server: &TestServer,
    account: &myelin_testing::Account,
    room: &str,
    body: &str,
) -> Value {
    let want = format!("echo: {body}");
    let sync = sync_until(server, account, &format!("the echo of {body:?}"), |s| {
        timeline(s, room)
            .iter()
            .any(|e| e["content"]["body"] == want.as_str())
    })
    .await;
    timeline(&sync, room)
        .into_iter()
        .find(|e| e["content"]["body"] == want.as_str())
        .unwrap()
}

#[tokio::test]
async fn a_mautrix_echo_bridge_runs_on_myelin() {
    let Some(python) = myelin_testing::synapse::venv_python() else {
        return;
    };
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("appservice/echo_bridge.py");
    let dir = tempfile::tempdir().unwrap();
    let (remote, relayed) = remote_network().await;
    let port = free_port();
    let reg_dir = dir.path().to_path_buf();
    let server = TestServer::start_federating_with(|c| {
        c.appservices.registration_files = vec![registration(&reg_dir, &c.server_name, port)];
        c.egress.allow = vec!["127.0.0.1".into()];
    })
    .await;
    let domain = server.server_name().to_owned();
    let journal_path = dir.path().join("journal.jsonl");
    let stderr = std::fs::File::create(dir.path().join("bridge.log")).unwrap();
    let mut bridge = tokio::process::Command::new(&python)
        .arg(&script)
        .args([
            server.base_url(),
            &domain,
            &port.to_string(),
            AS_TOKEN,
            HS_TOKEN,
            &remote,
        ])
        .arg(&journal_path)
        .current_dir(dir.path())
        .stderr(stderr)
        .kill_on_drop(true)
        .spawn()
        .expect("start the echo bridge");
    let bridge_log = dir.path().join("bridge.log");
    let ready = tokio::select! {
        ready = journal_until(&journal_path, "ready", |e| e["kind"] == "ready") => ready,
        exit = bridge.wait() => panic!(
            "the bridge exited ({exit:?}): {}",
            std::fs::read_to_string(&bridge_log).unwrap_or_default()
        ),
    };
    assert_eq!(ready["whoami"], format!("@echobot:{domain}"));
    assert!(
        ready["ping_ms"].as_i64().is_some_and(|ms| ms >= 0),
        "{ready}"
    );

    // Joining an alias of the bridge's namespace: the bridge makes the portal on the query.
    let alice = register(&server, "alice").await;
    let alias = format!("#echo_lobby:{domain}");
    let (status, joined) = server
        .post(
            &format!("{C}/join/{}", enc(&alias)),
            alice.token(),
            &json!({}),
        )
        .await;
    assert_eq!(status, 200, "join the portal: {joined}");
    let room = joined["room_id"].as_str().unwrap().to_owned();
    let portal = journal_until(&journal_path, "the portal", |e| e["kind"] == "portal").await;
    assert_eq!(portal["room_id"], room.as_str());

    server
        .send_message(&alice.access_token, &room, "m1", "hello remote")
        .await;
    let echo = echo_of(&server, &alice, &room, "hello remote").await;
    assert_eq!(echo["sender"], format!("@echo_remote_alice:{domain}"));
    assert_eq!(
        echo["origin_server_ts"], REMOTE_TS,
        "the network's timestamp"
    );
    assert_eq!(relayed.lock().unwrap()[0]["body"], "hello remote");

    // Typing and a receipt reach the bridge as ephemeral events.
    let typing = room_path(&room, &format!("typing/{}", enc(&alice.user_id)));
    assert_ok(
        &server
            .put(
                &typing,
                alice.token(),
                &json!({ "typing": true, "timeout": 10000 }),
            )
            .await,
        "typing",
    );
    let echo_id = echo["event_id"].as_str().unwrap();
    let receipt = room_path(&room, &format!("receipt/m.read/{}", enc(echo_id)));
    assert_ok(
        &server.post(&receipt, alice.token(), &json!({})).await,
        "receipt",
    );
    journal_until(&journal_path, "alice typing", |e| {
        e["kind"] == "typing" && e["user_ids"] == json!([alice.user_id])
    })
    .await;
    journal_until(&journal_path, "the receipt", |e| {
        e["kind"] == "receipt" && e["event_ids"] == json!([echo_id])
    })
    .await;
    // And presence, alice sharing the portal with the bridge's puppet.
    let presence = format!("{C}/presence/{}/status", enc(&alice.user_id));
    assert_ok(
        &server
            .put(
                &presence,
                alice.token(),
                &json!({ "presence": "unavailable" }),
            )
            .await,
        "presence",
    );
    journal_until(&journal_path, "alice's presence", |e| {
        e["kind"] == "presence"
            && e["user_id"] == alice.user_id.as_str()
            && e["presence"] == "unavailable"
    })
    .await;

    // Myelin restarts (same address); the bridge goes on.
    let server = server.restarted().await;
    server
        .send_message(&alice.access_token, &room, "m2", "after restart")
        .await;
    echo_of(&server, &alice, &room, "after restart").await;

    // No transaction handled twice, no event in two transactions.
    let txns: Vec<Value> = journal(&journal_path)
        .into_iter()
        .filter(|e| e["kind"] == "txn")
        .collect();
    let mut txn_ids = HashSet::new();
    let mut event_ids = HashSet::new();
    for txn in &txns {
        assert!(
            txn_ids.insert(txn["txn_id"].clone()),
            "transaction twice: {txn}"
        );
        for id in txn["event_ids"].as_array().unwrap() {
            assert!(
                event_ids.insert(id.clone()),
                "event {id} in two transactions"
            );
        }
    }
    let bodies = relayed
        .lock()
        .unwrap()
        .iter()
        .map(|b| b["body"].clone())
        .collect::<Vec<_>>();
    assert_eq!(
        bodies,
        vec![json!("hello remote"), json!("after restart")],
        "each relayed once"
    );
    let _ = bridge.kill().await;
}
