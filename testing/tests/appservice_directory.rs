//! The room directories of an appservice's third-party networks, over raw HTTP against the
//! stub appservice on loopback (`myelin_testing::appservice`): the appservice publishes rooms
//! under its networks (`PUT /directory/list/appservice/{networkId}/{roomId}`), `/thirdparty/
//! protocols` names each network's `instance_id`, and `/publicRooms` lists the main directory by
//! default, one network's rooms with `third_party_instance_id`, every directory with
//! `include_all_networks`, each paginated; the same choices reach another server's directory
//! over federation (GET and POST).

use std::collections::BTreeSet;

use myelin_testing::appservice::{StubAppservice, AS_ID, AS_TOKEN};
use myelin_testing::http::{assert_err, assert_ok, register, C};
use myelin_testing::{enc, TestServer};
use serde_json::{json, Value};

const LIBERA: &str = "stubbridge|libera";

/// A server with the stub registered for `localhost`, its loopback address allowed.
async fn start(stub: &StubAppservice, dir: &std::path::Path) -> TestServer {
    let registration = stub.write_registration(dir, "localhost");
    let server = TestServer::start_with(|c| {
        c.appservices.registration_files = vec![registration];
        c.egress.allow = vec!["127.0.0.1".into()];
    })
    .await;
    stub.set_homeserver(server.base_url());
    server
}

fn publish_path(network: &str, room_id: &str) -> String {
    format!(
        "{C}/directory/list/appservice/{}/{}",
        enc(network),
        enc(room_id)
    )
}

/// The appservice sets the room's visibility in its network's directory.
async fn publish(server: &TestServer, network: &str, room_id: &str, visibility: &str) {
    let resp = server
        .put(
            &publish_path(network, room_id),
            Some(AS_TOKEN),
            &json!({ "visibility": visibility }),
        )
        .await;
    assert_ok(&resp, "PUT directory/list/appservice");
    assert_eq!(resp.1, json!({}));
}

/// The room IDs of a `/publicRooms` answer, as a set (every room has one member, so the order
/// is the room IDs').
fn room_set(answer: &Value) -> BTreeSet<String> {
    answer["chunk"]
        .as_array()
        .unwrap_or_else(|| panic!("no chunk in {answer}"))
        .iter()
        .map(|r| r["room_id"].as_str().expect("room_id").to_owned())
        .collect()
}

fn set(rooms: &[&String]) -> BTreeSet<String> {
    rooms.iter().map(|r| (*r).clone()).collect()
}

/// `POST /publicRooms` with `body`, asserted 200.
async fn query(server: &TestServer, token: Option<&str>, body: Value) -> Value {
    let resp = server.post(&format!("{C}/publicRooms"), token, &body).await;
    assert_ok(&resp, &format!("POST /publicRooms {body}"));
    resp.1
}

/// Every page of a POST `/publicRooms` with `body` and `limit` 2: the rooms of all pages, and
/// the estimate of each page (the same on all).
async fn all_pages(server: &TestServer, token: Option<&str>, body: Value) -> BTreeSet<String> {
    let mut rooms = BTreeSet::new();
    let mut since: Option<String> = None;
    let mut estimate = None;
    for _ in 0..10 {
        let mut page_body = body.clone();
        page_body["limit"] = json!(2);
        if let Some(since) = &since {
            page_body["since"] = json!(since);
        }
        let page = query(server, token, page_body).await;
        let chunk = room_set(&page);
        assert!(chunk.len() <= 2, "{page}");
        assert!(rooms.is_disjoint(&chunk), "pages overlap: {page}");
        rooms.extend(chunk);
        let total = page["total_room_count_estimate"].as_u64();
        assert!(estimate.is_none() || estimate == total, "{page}");
        estimate = total;
        match page["next_batch"].as_str() {
            Some(next) => since = Some(next.to_owned()),
            None => {
                assert_eq!(estimate, Some(rooms.len() as u64), "{page}");
                return rooms;
            }
        }
    }
    panic!("more than 10 pages for {body}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn appservice_networks_have_their_own_directories() {
    let dir = tempfile::tempdir().unwrap();
    let stub = StubAppservice::start().await;
    let server = start(&stub, dir.path()).await;
    let alice = register(&server, "alice").await;
    let token = alice.token();
    let main = server
        .create_room(
            &alice.access_token,
            &json!({ "visibility": "public", "name": "Main" }),
        )
        .await;
    let mut libera = Vec::new();
    for n in 0..3 {
        let room = server
            .create_room(&alice.access_token, &json!({ "name": format!("irc {n}") }))
            .await;
        publish(&server, "libera", &room, "public").await;
        libera.push(room);
    }
    let oftc = server
        .create_room(&alice.access_token, &json!({ "name": "oftc" }))
        .await;
    publish(&server, "oftc", &oftc, "public").await;
    // Published twice under one network, and also in the main directory: listed once.
    publish(&server, "libera", &libera[0], "public").await;
    publish(&server, "libera", &main, "public").await;

    // Each protocol instance carries the instance ID clients pass back.
    let (status, protocols) = server
        .get(&format!("{C}/thirdparty/protocols"), token)
        .await;
    assert_eq!(status, 200, "{protocols}");
    let instances = &protocols["stubnet"]["instances"];
    assert_eq!(instances[0]["network_id"], "libera");
    assert_eq!(instances[0]["instance_id"], format!("{AS_ID}|libera"));
    assert_eq!(instances[1]["instance_id"], format!("{AS_ID}|oftc"));
    let (status, protocol) = server
        .get(&format!("{C}/thirdparty/protocol/stubnet"), token)
        .await;
    assert_eq!(status, 200, "{protocol}");
    assert_eq!(protocol["instances"], *instances);
    let libera_id = instances[0]["instance_id"].as_str().unwrap().to_owned();
    assert_eq!(libera_id, LIBERA);

    // By default only the main directory, GET or POST.
    let (_, default) = server.get(&format!("{C}/publicRooms"), None).await;
    assert_eq!(room_set(&default), set(&[&main]), "{default}");
    assert_eq!(default["total_room_count_estimate"], 1);
    let default = query(&server, token, json!({})).await;
    assert_eq!(room_set(&default), set(&[&main]));
    let default = query(&server, token, json!({ "include_all_networks": false })).await;
    assert_eq!(room_set(&default), set(&[&main]));

    // One network: its rooms only, through every page.
    let all_libera = set(&[&main, &libera[0], &libera[1], &libera[2]]);
    let network = json!({ "third_party_instance_id": libera_id });
    assert_eq!(all_pages(&server, token, network.clone()).await, all_libera);
    let (status, by_get) = server
        .get(
            &format!("{C}/publicRooms?third_party_instance_id={}", enc(LIBERA)),
            None,
        )
        .await;
    assert_eq!(status, 200, "{by_get}");
    assert_eq!(room_set(&by_get), all_libera);
    let oftc_only = json!({ "third_party_instance_id": format!("{AS_ID}|oftc") });
    assert_eq!(
        room_set(&query(&server, token, oftc_only).await),
        set(&[&oftc])
    );
    // A search term narrows a network's list as it does the main one.
    let filtered = json!({
        "third_party_instance_id": LIBERA,
        "filter": { "generic_search_term": "IRC 1" },
    });
    assert_eq!(
        room_set(&query(&server, token, filtered).await),
        set(&[&libera[1]])
    );

    // Every network and the main directory, each room once, through every page.
    let everything = json!({ "include_all_networks": true });
    let mut expected = all_libera.clone();
    expected.insert(oftc.clone());
    assert_eq!(all_pages(&server, token, everything).await, expected);
    let (_, by_get) = server
        .get(&format!("{C}/publicRooms?include_all_networks=true"), None)
        .await;
    assert_eq!(room_set(&by_get), expected);
    assert_eq!(by_get["total_room_count_estimate"], 5);

    // Networks nobody published in are empty; a malformed ID or both choices are refused.
    for unknown in [format!("{AS_ID}|nope"), "other|libera".to_owned()] {
        let answer = query(
            &server,
            token,
            json!({ "third_party_instance_id": unknown }),
        )
        .await;
        assert_eq!(room_set(&answer), BTreeSet::new(), "{unknown}: {answer}");
        assert_eq!(answer["total_room_count_estimate"], 0);
    }
    for bad in [
        json!({ "third_party_instance_id": "libera" }),
        json!({ "third_party_instance_id": "a|b|c" }),
        json!({ "third_party_instance_id": LIBERA, "include_all_networks": true }),
    ] {
        let resp = server.post(&format!("{C}/publicRooms"), token, &bad).await;
        assert_err(&resp, 400, "M_INVALID_PARAM", &bad.to_string());
    }

    // Only an appservice may publish in a network's directory, public or private only.
    let resp = server
        .put(
            &publish_path("libera", &oftc),
            token,
            &json!({ "visibility": "public" }),
        )
        .await;
    assert_err(&resp, 403, "M_FORBIDDEN", "a user publishing in a network");
    let resp = server
        .put(
            &publish_path("libera", &oftc),
            Some(AS_TOKEN),
            &json!({ "visibility": "everyone" }),
        )
        .await;
    assert_err(&resp, 400, "M_INVALID_PARAM", "an unknown visibility");
    let resp = server
        .put(
            &publish_path("a|b", &oftc),
            Some(AS_TOKEN),
            &json!({ "visibility": "public" }),
        )
        .await;
    assert_err(&resp, 400, "M_INVALID_PARAM", "a network ID with a bar");
    let resp = server
        .put(
            &publish_path("libera", "!unknown:localhost"),
            Some(AS_TOKEN),
            &json!({ "visibility": "public" }),
        )
        .await;
    assert_err(&resp, 404, "M_NOT_FOUND", "an unknown room");
    // Publishing in a network leaves the room's main visibility alone.
    let (_, visibility) = server
        .get(
            &format!("{C}/directory/list/room/{}", enc(&libera[1])),
            None,
        )
        .await;
    assert_eq!(visibility["visibility"], "private");

    // `private` withdraws the room from that network only.
    publish(&server, "libera", &main, "private").await;
    publish(&server, "libera", &libera[2], "private").await;
    let answer = query(&server, token, network.clone()).await;
    assert_eq!(room_set(&answer), set(&[&libera[0], &libera[1]]));
    let (_, default) = server.get(&format!("{C}/publicRooms"), None).await;
    assert_eq!(room_set(&default), set(&[&main]), "still in the main one");

    // The networks' directories survive a restart.
    let server = server.restarted().await;
    let answer = query(&server, token, network).await;
    assert_eq!(room_set(&answer), set(&[&libera[0], &libera[1]]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn another_server_asks_for_a_network_over_federation() {
    let dir = tempfile::tempdir().unwrap();
    let stub = StubAppservice::start().await;
    let a = TestServer::start_federating_with(|c| {
        let registration = stub.write_registration(dir.path(), &c.server_name);
        c.appservices.registration_files = vec![registration];
        c.egress.allow = vec!["127.0.0.1".into()];
    })
    .await;
    stub.set_homeserver(a.base_url());
    let b = TestServer::start_federating().await;
    let alice = register(&a, "alice").await;
    let bob = register(&b, "bob").await;
    let main = a
        .create_room(
            &alice.access_token,
            &json!({ "visibility": "public", "name": "Main hall" }),
        )
        .await;
    let portal = a
        .create_room(&alice.access_token, &json!({ "name": "Libera portal" }))
        .await;
    publish(&a, "libera", &portal, "public").await;

    let server = enc(a.loopback_server_name());
    let list = format!("{C}/publicRooms?server={server}");
    // GET: the main directory; every directory asked for by the GET's query string.
    let (status, answer) = b.get(&list, bob.token()).await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(room_set(&answer), set(&[&main]));
    let (status, answer) = b
        .get(&format!("{list}&include_all_networks=true"), bob.token())
        .await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(room_set(&answer), set(&[&main, &portal]));
    // POST without a filter goes to A's GET with the network in the query string.
    let network = json!({ "third_party_instance_id": LIBERA });
    let resp = b.post(&list, bob.token(), &network).await;
    assert_ok(&resp, "POST /publicRooms?server=A with a network");
    assert_eq!(room_set(&resp.1), set(&[&portal]));
    // With a filter it goes to A's POST, network and all.
    for (body, expected) in [
        (
            json!({ "third_party_instance_id": LIBERA, "filter": { "generic_search_term": "portal" } }),
            set(&[&portal]),
        ),
        (
            json!({ "third_party_instance_id": LIBERA, "filter": { "generic_search_term": "hall" } }),
            BTreeSet::new(),
        ),
        (
            json!({ "include_all_networks": true, "filter": { "generic_search_term": "l" } }),
            set(&[&main, &portal]),
        ),
    ] {
        let resp = b.post(&list, bob.token(), &body).await;
        assert_ok(&resp, &body.to_string());
        assert_eq!(room_set(&resp.1), expected, "{body}");
    }
}
