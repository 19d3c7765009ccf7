//! The cache of remote users' device lists: a key query on A about bob of B fetches bob's list
//! once (`/user/devices`), `m.device_list_update` EDUs keep it current so later queries are
//! answered without asking B (even with B down), an update that does not follow on from what A
//! holds (a gap in `prev_id`) makes A fetch the list again, whether a stub server sends the gap
//! or another Myelin's update chain shows one it missed, and a list goes once its user shares no
//! room with a user of A (fetched afresh when they share one again). The same with a Synapse
//! user: Synapse's `stream_id`s and `prev_id`s keep Myelin's cache current.

use std::time::{Duration, Instant};

use myelin_testing::hostile::HostileServer;
use myelin_testing::http::PW;
use myelin_testing::{enc, Account, StatusCode, SynapseServer, TestServer};
use reqwest::Method;
use serde_json::{json, Value};

const DEVICES_PATH: &str = "/_matrix/federation/v1/user/devices/";

/// Uploads minimal (unsigned, test-only) identity keys for `account`'s device.
async fn upload_device_keys(server: &TestServer, account: &Account, key: &str) {
    let device = account.device_id.clone();
    let (status, body) = server
        .post(
            "/_matrix/client/v3/keys/upload",
            account.token(),
            &json!({ "device_keys": {
                "user_id": account.user_id,
                "device_id": device,
                "algorithms": ["m.olm.v1.curve25519-aes-sha2", "m.megolm.v1.aes-sha2"],
                "keys": { format!("curve25519:{device}"): key, format!("ed25519:{device}"): key },
                "signatures": { account.user_id.clone(): { format!("ed25519:{device}"): "sig" } },
            } }),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
}

/// `POST /keys/query` on `server` about all of `user`'s devices: the whole answer.
async fn query(server: &TestServer, account: &Account, user: &str) -> Value {
    let (status, keys) = server
        .post(
            "/_matrix/client/v3/keys/query",
            account.token(),
            &json!({ "device_keys": { user: [] }, "timeout": 5_000 }),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{keys}");
    keys
}

/// The device IDs a key query answer lists for `user`, sorted.
fn device_ids(keys: &Value, user: &str) -> Vec<String> {
    let mut ids: Vec<String> = keys["device_keys"][user]
        .as_object()
        .map(|devices| devices.keys().cloned().collect())
        .unwrap_or_default();
    ids.sort();
    ids
}

/// Queries until `user`'s devices are `expected`; panics after 20 s.
async fn query_until(server: &TestServer, account: &Account, user: &str, expected: &[&str]) {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let keys = query(server, account, user).await;
        if device_ids(&keys, user) == expected {
            return;
        }
        assert!(Instant::now() < deadline, "never saw {expected:?}: {keys}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Long-polls alice's `/sync` from `since` until `user` is in `device_lists.changed`.
async fn sync_until_changed(server: &TestServer, account: &Account, since: String, user: &str) {
    let token = account.token().expect("token");
    let mut since = Some(since);
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let sync = server.sync(token, since.as_deref(), 2_000).await;
        let changed = sync["device_lists"]["changed"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        if changed.iter().any(|u| u == user) {
            return;
        }
        assert!(Instant::now() < deadline, "{user} never changed in /sync");
        since = sync["next_batch"].as_str().map(str::to_owned);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn remote_device_changes_are_cached_and_served_without_the_remote() {
    let a = TestServer::start_federating().await;
    let b = TestServer::start_federating().await;
    let alice = a.register("alice", PW).await;
    let bob = b.register("bob", PW).await;
    upload_device_keys(&b, &bob, "laptop-key").await;
    let room = a
        .create_room(
            alice.token().expect("token"),
            &json!({ "preset": "public_chat" }),
        )
        .await;
    let join = format!(
        "/_matrix/client/v3/join/{}?server_name={}",
        enc(&room),
        enc(a.server_name())
    );
    let (status, body) = b.post(&join, bob.token(), &json!({})).await;
    assert_eq!(status, StatusCode::OK, "{body}");

    // The first query fetches bob's list from B (and caches it).
    query_until(&a, &alice, &bob.user_id, &[bob.device_id.as_str()]).await;
    let since = a.sync(alice.token().expect("token"), None, 0).await["next_batch"]
        .as_str()
        .expect("next_batch")
        .to_owned();

    // Bob signs in on a phone: B's m.device_list_update patches A's cache, and alice's /sync
    // lists bob as changed.
    let phone = b.login("bob", PW).await;
    upload_device_keys(&b, &phone, "phone-key").await;
    sync_until_changed(&a, &alice, since, &bob.user_id).await;

    // With B down, A still answers from its cache: both devices, no failure.
    let _b_data = b.stop().await;
    let keys = query(&a, &alice, &bob.user_id).await;
    let mut both = vec![bob.device_id.clone(), phone.device_id.clone()];
    both.sort();
    assert_eq!(device_ids(&keys, &bob.user_id), both, "{keys}");
    assert_eq!(keys["failures"], json!({}), "{keys}");
    let phone_keys = &keys["device_keys"][bob.user_id.as_str()][phone.device_id.as_str()];
    let curve = format!("curve25519:{}", phone.device_id);
    assert_eq!(phone_keys["keys"][curve], "phone-key", "{keys}");
    a.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_update_a_server_missed_is_seen_as_a_gap_and_the_list_refetched() {
    // A gives up on a destination unreachable for half a second and drops its queue, so an
    // update sent while B is down never reaches B.
    let a = TestServer::start_federating_with(|c| {
        c.federation.retry_min_ms = 50;
        c.federation.retry_max_ms = 200;
        c.federation.give_up_after_ms = 500;
    })
    .await;
    let b = TestServer::start_federating().await;
    let alice = a.register("alice", PW).await;
    let bob = b.register("bob", PW).await;
    upload_device_keys(&a, &alice, "laptop-key").await;
    let room = a
        .create_room(
            alice.token().expect("token"),
            &json!({ "preset": "public_chat" }),
        )
        .await;
    let join = format!(
        "/_matrix/client/v3/join/{}?server_name={}",
        enc(&room),
        enc(a.server_name())
    );
    let (status, body) = b.post(&join, bob.token(), &json!({})).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    query_until(&b, &bob, &alice.user_id, &[alice.device_id.as_str()]).await;

    // Alice's phone while B is down: A's update to B is dropped with B's queue.
    let b_data = b.stop().await;
    let phone = a.login("alice", PW).await;
    upload_device_keys(&a, &phone, "phone-key").await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    let b = TestServer::restart(b_data).await;
    let keys = query(&b, &bob, &alice.user_id).await;
    assert_eq!(
        device_ids(&keys, &alice.user_id),
        vec![alice.device_id.clone()],
        "B missed the phone and still trusts its list: {keys}"
    );

    // Alice's tablet: its update names the phone's as the one before, which B never saw, so B
    // fetches the whole list again rather than patching the tablet into a list without the phone.
    let tablet = a.login("alice", PW).await;
    upload_device_keys(&a, &tablet, "tablet-key").await;
    let mut all = vec![
        alice.device_id.as_str(),
        phone.device_id.as_str(),
        tablet.device_id.as_str(),
    ];
    all.sort();
    query_until(&b, &bob, &alice.user_id, &all).await;
    // What B holds now is the whole list: with A down, B answers it from its cache.
    a.stop().await;
    let keys = query(&b, &bob, &alice.user_id).await;
    assert_eq!(device_ids(&keys, &alice.user_id), all, "{keys}");
    assert_eq!(keys["failures"], json!({}), "{keys}");
    b.stop().await;
}

/// `/user/devices` for `user` at `stream_id` with these devices.
fn devices_answer(user: &str, stream_id: i64, devices: &[&str]) -> Value {
    let devices: Vec<Value> = devices
        .iter()
        .map(|d| json!({ "device_id": d, "keys": device_keys(user, d) }))
        .collect();
    json!({ "user_id": user, "stream_id": stream_id, "devices": devices })
}

fn device_keys(user: &str, device: &str) -> Value {
    json!({
        "user_id": user,
        "device_id": device,
        "algorithms": ["m.olm.v1.curve25519-aes-sha2"],
        "keys": { format!("curve25519:{device}"): format!("key-{device}") },
        "signatures": {},
    })
}

fn update(user: &str, device: &str, stream_id: i64, prev_id: &[i64]) -> Value {
    json!({
        "edu_type": "m.device_list_update",
        "content": {
            "user_id": user,
            "device_id": device,
            "stream_id": stream_id,
            "prev_id": prev_id,
            "deleted": false,
            "keys": device_keys(user, device),
        },
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_gap_in_prev_id_refetches_the_device_list() {
    let a = TestServer::start_federating().await;
    let hostile = HostileServer::start().await;
    let alice = a.register("alice", PW).await;
    let room = a
        .create_room(
            alice.token().expect("token"),
            &json!({ "preset": "public_chat", "room_version": "10" }),
        )
        .await;
    hostile.join(&a, &room, "mallory").await;
    let mallory = hostile.user("mallory");
    let fetches = || hostile.received_under(DEVICES_PATH).len();

    // The first query fetches the whole list; the next ones are answered from the cache.
    hostile.set_answer(DEVICES_PATH, devices_answer(&mallory, 5, &["D1"]));
    query_until(&a, &alice, &mallory, &["D1"]).await;
    assert_eq!(fetches(), 1);
    query_until(&a, &alice, &mallory, &["D1"]).await;
    assert_eq!(fetches(), 1, "answered from the cache");

    // An update that follows on (prev_id 5) is applied without asking.
    hostile
        .send_edus(&a, "t1", vec![update(&mallory, "D2", 6, &[5])])
        .await;
    query_until(&a, &alice, &mallory, &["D1", "D2"]).await;
    // An update about another server's user is not taken from this origin.
    let stranger = format!("@eve:{}", a.server_name());
    hostile
        .send_edus(&a, "t2", vec![update(&stranger, "EVIL", 7, &[])])
        .await;
    assert_eq!(fetches(), 1);
    assert!(hostile
        .received_under("/_matrix/federation/v1/user/keys/query")
        .is_empty());

    // A gap (prev_id 8, never seen): A fetches the list again and serves what it says now.
    hostile.set_answer(DEVICES_PATH, devices_answer(&mallory, 9, &["D3"]));
    hostile
        .send_edus(&a, "t3", vec![update(&mallory, "D3", 9, &[8])])
        .await;
    hostile
        .wait_for("a second device list fetch", Duration::from_secs(10), |r| {
            (r.iter()
                .filter(|r| r.path.starts_with(DEVICES_PATH))
                .count()
                >= 2)
                .then_some(())
        })
        .await;
    query_until(&a, &alice, &mallory, &["D3"]).await;
    let keys = query(&a, &alice, &stranger).await;
    assert_eq!(device_ids(&keys, &stranger), Vec::<String>::new(), "{keys}");
    a.stop().await;
}

/// Uploads test-only identity keys for a Synapse user's device.
async fn synapse_upload_keys(synapse: &SynapseServer, token: &str, user: &str, device: &str) {
    let mut keys = device_keys(user, device);
    keys["signatures"] = json!({ user: { format!("ed25519:{device}"): "sig" } });
    keys["keys"][format!("ed25519:{device}")] = json!(format!("ed-{device}"));
    let (status, body) = synapse
        .request(
            Method::POST,
            "/_matrix/client/v3/keys/upload",
            Some(token),
            Some(&json!({ "device_keys": keys })),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
}

/// Signs `sam` in on Synapse again: the new device's ID and token.
async fn synapse_login(synapse: &SynapseServer, localpart: &str) -> (String, String) {
    let body = json!({
        "type": "m.login.password",
        "identifier": { "type": "m.id.user", "user": localpart },
        "password": PW,
    });
    let (status, login) = synapse
        .request(Method::POST, "/_matrix/client/v3/login", None, Some(&body))
        .await;
    assert_eq!(status, StatusCode::OK, "{login}");
    let field = |name: &str| login[name].as_str().expect("login field").to_owned();
    (field("device_id"), field("access_token"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn synapse_device_changes_reach_the_cache() {
    let Some(synapse) = SynapseServer::start().await else {
        return;
    };
    let myelin = TestServer::start_federating_tls().await;
    let alice = myelin.register("alice", PW).await;
    synapse.register("sam", PW).await;
    let (laptop, laptop_token) = synapse_login(&synapse, "sam").await;
    let (_, whoami) = synapse
        .request(
            Method::GET,
            "/_matrix/client/v3/account/whoami",
            Some(&laptop_token),
            None,
        )
        .await;
    let sam = whoami["user_id"].as_str().expect("sam's ID").to_owned();
    synapse_upload_keys(&synapse, &laptop_token, &sam, &laptop).await;
    let room = myelin
        .create_room(
            alice.token().expect("token"),
            &json!({ "preset": "public_chat", "room_alias_name": "devlists" }),
        )
        .await;
    let alias = format!("#devlists:{}", myelin.server_name());
    let (status, body) = synapse
        .request(
            Method::POST,
            &format!("/_matrix/client/v3/join/{}", enc(&alias)),
            Some(&laptop_token),
            Some(&json!({})),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["room_id"], room.as_str());

    // The registration's device has no keys: only the laptop is listed.
    query_until(&myelin, &alice, &sam, &[laptop.as_str()]).await;
    let since = myelin.sync(alice.token().expect("token"), None, 0).await["next_batch"]
        .as_str()
        .expect("next_batch")
        .to_owned();
    let (phone, phone_token) = synapse_login(&synapse, "sam").await;
    synapse_upload_keys(&synapse, &phone_token, &sam, &phone).await;
    sync_until_changed(&myelin, &alice, since, &sam).await;
    let mut both = vec![laptop.as_str(), phone.as_str()];
    both.sort();
    query_until(&myelin, &alice, &sam, &both).await;

    // Synapse's prev_ids follow on from the stream_id of its /user/devices answer: the phone
    // was patched in, the list was fetched only once (Synapse logs each request it serves).
    let log = std::fs::read_to_string(synapse.dir().join("homeserver.log")).unwrap_or_default();
    let fetches = log
        .lines()
        .filter(|l| l.contains("Processed request") && l.contains("/user/devices/"))
        .count();
    assert_eq!(fetches, 1, "one /user/devices fetch");

    // Synapse gone: Myelin answers from its cache.
    drop(synapse);
    let keys = query(&myelin, &alice, &sam).await;
    assert_eq!(device_ids(&keys, &sam), both, "{keys}");
    assert_eq!(keys["failures"], json!({}), "{keys}");
    myelin.stop().await;
}

/// The event ID of the state event `(kind, key)` of the room, read by `account`.
async fn state_id(server: &TestServer, account: &Account, room: &str, kind: &str) -> String {
    let path = format!("/_matrix/client/v3/rooms/{}/state", enc(room));
    let (status, state) = server.get(&path, account.token()).await;
    assert_eq!(status, StatusCode::OK, "{state}");
    state
        .as_array()
        .expect("state")
        .iter()
        .find(|e| e["type"] == kind && e["state_key"] == "")
        .and_then(|e| e["event_id"].as_str())
        .unwrap_or_else(|| panic!("no {kind} in {state}"))
        .to_owned()
}

/// Whether the server's database holds a cached device list of `user` (read beside the
/// running server, through the storage it uses).
async fn cached(storage: &dyn myelin_storage::Storage, user: &str) -> bool {
    let user = user.try_into().expect("user ID");
    !storage
        .remote_device_lists(&[user])
        .await
        .expect("read the cache")
        .is_empty()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_list_goes_when_its_user_shares_no_room_any_more() {
    let a = TestServer::start_federating().await;
    let hostile = HostileServer::start().await;
    let alice = a.register("alice", PW).await;
    let token = alice.token().expect("token");
    let body = json!({ "preset": "public_chat", "room_version": "10" });
    let (first, second) = (
        a.create_room(token, &body).await,
        a.create_room(token, &body).await,
    );
    hostile.join(&a, &first, "mallory").await;
    let mallory_join = hostile.join(&a, &second, "mallory").await;
    let mallory = hostile.user("mallory");
    let fetches = || hostile.received_under(DEVICES_PATH).len();
    hostile.set_answer(DEVICES_PATH, devices_answer(&mallory, 5, &["D1"]));
    query_until(&a, &alice, &mallory, &["D1"]).await;
    assert_eq!(fetches(), 1);
    let storage = myelin::storage::open(a.config())
        .await
        .expect("open the storage");
    assert!(cached(storage.as_ref(), &mallory).await);

    // Alice leaves one room: mallory still shares the other with her, the list stays.
    a.leave(token, &first).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(cached(storage.as_ref(), &mallory).await, "still shared");

    // Mallory leaves the other (a leave from his server): nothing is shared, the list goes.
    let create = state_id(&a, &alice, &second, "m.room.create").await;
    let power = state_id(&a, &alice, &second, "m.room.power_levels").await;
    let uri = format!("/_matrix/federation/v1/event/{}", enc(&mallory_join));
    let (status, join) = hostile.request(&a, "GET", &uri, None).await;
    assert_eq!(status, StatusCode::OK, "{join}");
    let depth = join["pdus"][0]["depth"].as_u64().expect("depth");
    let (_, leave) = hostile.sign_pdu(json!({
        "type": "m.room.member",
        "state_key": mallory,
        "room_id": second,
        "sender": mallory,
        "origin_server_ts": myelin_testing::federation::now_ms(),
        "content": { "membership": "leave" },
        "prev_events": [mallory_join],
        "auth_events": [create, power, mallory_join],
        "depth": depth + 1,
    }));
    let results = hostile.send_transaction(&a, "leave", vec![leave]).await;
    assert!(
        results
            .as_object()
            .is_some_and(|r| r.values().all(|v| v.get("error").is_none())),
        "{results}"
    );
    let deadline = Instant::now() + Duration::from_secs(10);
    while cached(storage.as_ref(), &mallory).await {
        assert!(Instant::now() < deadline, "the list of mallory stayed");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // Sharing a room again, a query fetches the list afresh.
    let third = a.create_room(token, &body).await;
    hostile.join(&a, &third, "mallory").await;
    hostile.set_answer(DEVICES_PATH, devices_answer(&mallory, 9, &["D2"]));
    query_until(&a, &alice, &mallory, &["D2"]).await;
    assert_eq!(fetches(), 2);
    a.stop().await;
}

/// How many `/user/devices` requests Synapse has sent (it logs each request it makes).
fn synapse_device_list_fetches(synapse: &SynapseServer) -> usize {
    let log = std::fs::read_to_string(synapse.dir().join("homeserver.log")).unwrap_or_default();
    log.lines()
        .filter(|l| l.contains("Completed request") && l.contains("/user/devices/"))
        .count()
}

/// Queries Synapse about `user`'s devices until they are `expected`; panics after 20 s.
async fn synapse_query_until(synapse: &SynapseServer, token: &str, user: &str, expected: &[&str]) {
    let deadline = Instant::now() + Duration::from_secs(20);
    let body = json!({ "device_keys": { user: [] } });
    loop {
        let (status, keys) = synapse
            .request(
                Method::POST,
                "/_matrix/client/v3/keys/query",
                Some(token),
                Some(&body),
            )
            .await;
        assert_eq!(status, StatusCode::OK, "{keys}");
        if device_ids(&keys, user) == expected {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "Synapse never saw {expected:?}: {keys}"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn myelin_device_changes_reach_synapse_as_a_chain() {
    let Some(synapse) = SynapseServer::start().await else {
        return;
    };
    let myelin = TestServer::start_federating_tls().await;
    let alice = myelin.register("alice", PW).await;
    upload_device_keys(&myelin, &alice, "laptop-key").await;
    let (_, sam_token) = synapse.register("sam", PW).await;
    let room = myelin
        .create_room(
            alice.token().expect("token"),
            &json!({ "preset": "public_chat" }),
        )
        .await;
    let join = format!(
        "/_matrix/client/v3/join/{}?server_name={}",
        enc(&room),
        enc(myelin.server_name())
    );
    let (status, body) = synapse
        .request(Method::POST, &join, Some(&sam_token), Some(&json!({})))
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    synapse_query_until(&synapse, &sam_token, &alice.user_id, &[&alice.device_id]).await;
    let fetched = synapse_device_list_fetches(&synapse);
    assert_eq!(fetched, 1, "Synapse fetched alice's list to track it");

    // Alice's phone: Myelin's update names the stream ID of the list Synapse holds, so Synapse
    // patches the phone in without fetching the list again.
    let phone = myelin.login("alice", PW).await;
    upload_device_keys(&myelin, &phone, "phone-key").await;
    let mut both = vec![alice.device_id.as_str(), phone.device_id.as_str()];
    both.sort();
    synapse_query_until(&synapse, &sam_token, &alice.user_id, &both).await;
    assert_eq!(
        synapse_device_list_fetches(&synapse),
        fetched,
        "Synapse followed the chain: no new /user/devices fetch (it had made {fetched})"
    );
    myelin.stop().await;
}
