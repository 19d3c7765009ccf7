//! Crash durability: every message the server acknowledged with 200 must
//! survive a `kill -9` of the real `myelin` binary.
//!
//! The test starts `myelin serve` on a temporary data dir, writes messages
//! from several concurrent tasks, SIGKILLs the process mid-stream, restarts it
//! on the same data dir and checks `/messages` for every acknowledged event.
//! It does this for several kill/restart rounds.

mod common;

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::{enc, http, post, register, Server, C};
use serde_json::{json, Value};
const WRITERS: usize = 3;
/// Acknowledged messages per round before the kill.
const ACKS_BEFORE_KILL: usize = 100;
/// Kill/restart rounds.
const ROUNDS: usize = 3;

/// One acknowledged message.
#[derive(Clone, Debug)]
struct Ack {
    body: String,
    event_id: String,
}

/// Sends messages until a request fails (the server died) or `stop` is set.
async fn writer(
    http: reqwest::Client,
    base: String,
    token: String,
    room: String,
    tag: String,
    acks: Arc<Mutex<Vec<Ack>>>,
    stop: Arc<AtomicBool>,
) {
    for i in 0.. {
        if stop.load(Ordering::Relaxed) {
            return;
        }
        let body = format!("{tag}-{i}");
        let url = format!(
            "{base}{C}/rooms/{}/send/m.room.message/{}",
            enc(&room),
            enc(&body)
        );
        let sent = http
            .put(url)
            .bearer_auth(&token)
            .json(&json!({ "msgtype": "m.text", "body": body }))
            .send()
            .await;
        let Ok(resp) = sent else { return };
        if resp.status() != reqwest::StatusCode::OK {
            return;
        }
        let Ok(value) = resp.json::<Value>().await else {
            return;
        };
        let event_id = value["event_id"]
            .as_str()
            .expect("event_id in 200 response")
            .to_owned();
        acks.lock().unwrap().push(Ack { body, event_id });
    }
}

/// Every event in the room, oldest first, via backward `/messages` pagination.
async fn all_events(http: &reqwest::Client, base: &str, token: &str, room: &str) -> Vec<Value> {
    let mut events = Vec::new();
    let mut from: Option<String> = None;
    for _ in 0..1000 {
        let mut url = format!("{base}{C}/rooms/{}/messages?dir=b&limit=100", enc(room));
        if let Some(from) = &from {
            url.push_str(&format!("&from={}", enc(from)));
        }
        let resp = http
            .get(url)
            .bearer_auth(token)
            .send()
            .await
            .expect("GET /messages");
        assert_eq!(resp.status(), 200, "/messages after restart");
        let page: Value = resp.json().await.expect("/messages JSON");
        let chunk = page["chunk"].as_array().expect("chunk").clone();
        let done = chunk.is_empty() || page["end"].as_str().is_none();
        events.extend(chunk);
        if done {
            break;
        }
        from = page["end"].as_str().map(str::to_owned);
    }
    events.reverse();
    events
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acknowledged_messages_survive_kill_9() {
    let data_dir = tempfile::tempdir().expect("data dir");
    let log_dir = tempfile::tempdir().expect("log dir");
    let log = log_dir.path().join("myelin.log");
    let http = http();

    let mut server = Server::spawn(data_dir.path(), &log);
    let token = register(&http, &server.url, "writer").await;
    let (status, created) = post(
        &http,
        format!("{}{C}/createRoom", server.url),
        Some(&token),
        &json!({}),
    )
    .await;
    assert_eq!(status, 200, "createRoom: {created}");
    let room = created["room_id"].as_str().expect("room_id").to_owned();

    let acks = Arc::new(Mutex::new(Vec::<Ack>::new()));
    for round in 0..ROUNDS {
        let stop = Arc::new(AtomicBool::new(false));
        let writers: Vec<_> = (0..WRITERS)
            .map(|w| {
                tokio::spawn(writer(
                    http.clone(),
                    server.url.clone(),
                    token.clone(),
                    room.clone(),
                    format!("r{round}w{w}"),
                    acks.clone(),
                    stop.clone(),
                ))
            })
            .collect();

        // Let the writers get going, then pull the plug mid-stream.
        let target = acks.lock().unwrap().len() + ACKS_BEFORE_KILL;
        let deadline = tokio::time::Instant::now() + Duration::from_secs(120);
        while acks.lock().unwrap().len() < target {
            assert!(
                tokio::time::Instant::now() < deadline,
                "writers made no progress; log:\n{}",
                std::fs::read_to_string(&log).unwrap_or_default()
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        server.kill9();
        stop.store(true, Ordering::Relaxed);
        for w in writers {
            w.await.expect("writer task");
        }

        server = Server::spawn(data_dir.path(), &log);
    }

    let acks = acks.lock().unwrap().clone();
    assert!(
        acks.len() >= ROUNDS * ACKS_BEFORE_KILL,
        "only {} acknowledged writes",
        acks.len()
    );
    let events = all_events(&http, &server.url, &token, &room).await;
    eprintln!(
        "{} acknowledged messages, {} events in the room after {ROUNDS} kill -9s",
        acks.len(),
        events.len()
    );

    let by_id: HashMap<&str, &Value> = events
        .iter()
        .filter_map(|e| Some((e["event_id"].as_str()?, e)))
        .collect();
    assert_eq!(
        by_id.len(),
        events.len(),
        "duplicate event ids in /messages"
    );
    let mut missing = Vec::new();
    for ack in &acks {
        match by_id.get(ack.event_id.as_str()) {
            None => missing.push(ack.clone()),
            Some(e) => assert_eq!(
                e["content"]["body"],
                ack.body.as_str(),
                "content of {}",
                ack.event_id
            ),
        }
    }
    assert!(
        missing.is_empty(),
        "{} of {} acknowledged messages lost after kill -9: {:?}",
        missing.len(),
        acks.len(),
        missing.iter().take(10).collect::<Vec<_>>()
    );

    // Each writer sent sequentially, so its messages must appear in order.
    let bodies: Vec<&str> = events
        .iter()
        .filter(|e| e["type"] == "m.room.message")
        .filter_map(|e| e["content"]["body"].as_str())
        .collect();
    let mut last_seen: HashMap<&str, u64> = HashMap::new();
    for body in &bodies {
        let (tag, n) = body.rsplit_once('-').expect("body format");
        let n: u64 = n.parse().expect("sequence number");
        if let Some(prev) = last_seen.insert(tag, n) {
            assert!(n > prev, "{tag}: message {n} stored after {prev}");
        }
    }
    let unique: HashSet<&&str> = bodies.iter().collect();
    assert_eq!(unique.len(), bodies.len(), "a message was stored twice");

    // The restarted server keeps working.
    let url = format!(
        "{}{C}/rooms/{}/send/m.room.message/after-restart",
        server.url,
        enc(&room)
    );
    let resp = http
        .put(url)
        .bearer_auth(&token)
        .json(&json!({ "msgtype": "m.text", "body": "after restart" }))
        .send()
        .await
        .expect("send after restart");
    assert_eq!(resp.status(), 200, "send after restart");
}

/// What a long-polling client observed before the crash.
#[derive(Default)]
struct Observed {
    next_batch: Option<String>,
    seen: HashSet<String>,
}

/// Long-polls `/sync` until a request fails (the server died) or `stop` is set.
async fn syncer(
    http: reqwest::Client,
    base: String,
    token: String,
    room: String,
    observed: Arc<Mutex<Observed>>,
    stop: Arc<AtomicBool>,
) {
    while !stop.load(Ordering::Relaxed) {
        let since = observed.lock().unwrap().next_batch.clone();
        let mut url = format!(
            "{base}{C}/sync?timeout=1000&filter={}",
            enc(&big_timeline_filter())
        );
        if let Some(since) = since {
            url.push_str(&format!("&since={}", enc(&since)));
        }
        let Ok(resp) = http.get(url).bearer_auth(&token).send().await else {
            return;
        };
        if resp.status() != reqwest::StatusCode::OK {
            return;
        }
        let Ok(body) = resp.json::<Value>().await else {
            return;
        };
        let mut observed = observed.lock().unwrap();
        for event in body["rooms"]["join"][&room]["timeline"]["events"]
            .as_array()
            .into_iter()
            .flatten()
        {
            if let Some(id) = event["event_id"].as_str() {
                observed.seen.insert(id.to_owned());
            }
        }
        observed.next_batch = body["next_batch"].as_str().map(str::to_owned);
    }
}

fn big_timeline_filter() -> String {
    json!({ "room": { "timeline": { "limit": 1000 } } }).to_string()
}

/// A client that synced before a crash must be able to continue from its
/// last `next_batch` afterwards: new events arrive, seen events are not
/// repeated, and every event it was shown still exists.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sync_tokens_and_synced_events_survive_kill_9() {
    let data_dir = tempfile::tempdir().expect("data dir");
    let log_dir = tempfile::tempdir().expect("log dir");
    let log = log_dir.path().join("myelin.log");
    let http = http();

    let mut server = Server::spawn(data_dir.path(), &log);
    let token = register(&http, &server.url, "writer").await;
    let (status, created) = post(
        &http,
        format!("{}{C}/createRoom", server.url),
        Some(&token),
        &json!({}),
    )
    .await;
    assert_eq!(status, 200, "createRoom: {created}");
    let room = created["room_id"].as_str().expect("room_id").to_owned();

    let acks = Arc::new(Mutex::new(Vec::<Ack>::new()));
    let mut all_seen = HashSet::new();
    for round in 0..ROUNDS {
        let stop = Arc::new(AtomicBool::new(false));
        let observed = Arc::new(Mutex::new(Observed::default()));
        let reader = tokio::spawn(syncer(
            http.clone(),
            server.url.clone(),
            token.clone(),
            room.clone(),
            observed.clone(),
            stop.clone(),
        ));
        let writers: Vec<_> = (0..WRITERS)
            .map(|w| {
                tokio::spawn(writer(
                    http.clone(),
                    server.url.clone(),
                    token.clone(),
                    room.clone(),
                    format!("s{round}w{w}"),
                    acks.clone(),
                    stop.clone(),
                ))
            })
            .collect();

        let target = acks.lock().unwrap().len() + ACKS_BEFORE_KILL;
        let deadline = tokio::time::Instant::now() + Duration::from_secs(120);
        while acks.lock().unwrap().len() < target || observed.lock().unwrap().seen.is_empty() {
            assert!(
                tokio::time::Instant::now() < deadline,
                "no progress before the kill"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        server.kill9();
        stop.store(true, Ordering::Relaxed);
        for w in writers {
            w.await.expect("writer task");
        }
        reader.await.expect("sync task");
        let (since, seen) = {
            let observed = observed.lock().unwrap();
            (
                observed
                    .next_batch
                    .clone()
                    .expect("a next_batch before the crash"),
                observed.seen.clone(),
            )
        };

        server = Server::spawn(data_dir.path(), &log);

        // Continue syncing from the pre-crash token.
        let body = format!("post-crash-{round}");
        let url = format!(
            "{}{C}/rooms/{}/send/m.room.message/{}",
            server.url,
            enc(&room),
            enc(&body)
        );
        let resp = http
            .put(url)
            .bearer_auth(&token)
            .json(&json!({ "msgtype": "m.text", "body": body }))
            .send()
            .await
            .expect("send after restart");
        assert_eq!(resp.status(), 200, "send after restart");
        let new_id = resp.json::<Value>().await.unwrap()["event_id"]
            .as_str()
            .unwrap()
            .to_owned();

        let url = format!(
            "{}{C}/sync?timeout=5000&since={}&filter={}",
            server.url,
            enc(&since),
            enc(&big_timeline_filter())
        );
        let resp = http
            .get(url)
            .bearer_auth(&token)
            .send()
            .await
            .expect("sync after restart");
        assert_eq!(resp.status(), 200, "sync from a pre-crash token");
        let sync: Value = resp.json().await.unwrap();
        let ids: Vec<&str> = sync["rooms"]["join"][&room]["timeline"]["events"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|e| e["event_id"].as_str())
            .collect();
        assert!(
            ids.contains(&new_id.as_str()),
            "round {round}: post-crash message missing from sync since the pre-crash token: {sync}"
        );
        let repeated: Vec<&&str> = ids.iter().filter(|id| seen.contains(**id)).collect();
        assert!(
            repeated.is_empty(),
            "round {round}: events already synced before the crash were repeated: {repeated:?}"
        );
        all_seen.extend(seen);
    }

    let events = all_events(&http, &server.url, &token, &room).await;
    let stored: HashSet<&str> = events
        .iter()
        .filter_map(|e| e["event_id"].as_str())
        .collect();
    let vanished: Vec<&String> = all_seen
        .iter()
        .filter(|id| !stored.contains(id.as_str()))
        .collect();
    assert!(
        vanished.is_empty(),
        "{} events shown by /sync before a crash vanished: {:?}",
        vanished.len(),
        vanished
    );
    let lost: Vec<Ack> = acks
        .lock()
        .unwrap()
        .iter()
        .filter(|a| !stored.contains(a.event_id.as_str()))
        .cloned()
        .collect();
    assert!(lost.is_empty(), "acknowledged messages lost: {lost:?}");
}
