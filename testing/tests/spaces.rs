//! Spaces: `/hierarchy` walks a space's `m.space.child` events breadth-first, showing only the
//! rooms the user may see, with `suggested_only`, `max_depth` and pagination; rooms this server
//! is not in are summarised by a server in them (federation `/hierarchy`).

use std::collections::BTreeSet;

use myelin_testing::{enc, Account, StatusCode, TestServer};
use serde_json::{json, Value};

const PW: &str = "correct horse battery";

async fn room(
    server: &TestServer,
    owner: &Account,
    name: &str,
    preset: &str,
    space: bool,
) -> String {
    let mut body = json!({ "preset": preset, "name": name });
    if space {
        body["creation_content"] = json!({ "type": "m.space" });
    }
    server
        .create_room(owner.token().expect("token"), &body)
        .await
}

async fn add_child(
    server: &TestServer,
    owner: &Account,
    space: &str,
    child: &str,
    order: &str,
    suggested: bool,
) {
    let (status, body) = server
        .put(
            &format!(
                "/_matrix/client/v3/rooms/{}/state/m.space.child/{}",
                enc(space),
                enc(child)
            ),
            owner.token(),
            &json!({ "via": [server.server_name()], "order": order, "suggested": suggested }),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
}

async fn hierarchy(
    server: &TestServer,
    who: &Account,
    space: &str,
    query: &str,
) -> (StatusCode, Value) {
    server
        .get(
            &format!("/_matrix/client/v1/rooms/{}/hierarchy?{query}", enc(space)),
            who.token(),
        )
        .await
}

fn names(answer: &Value) -> Vec<String> {
    answer["rooms"]
        .as_array()
        .expect("rooms")
        .iter()
        .map(|r| r["name"].as_str().unwrap_or("?").to_owned())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn space_hierarchies_show_what_each_user_may_see() {
    let a = TestServer::start_federating().await;
    let b = TestServer::start_federating().await;
    let alice = a.register("alice", PW).await;
    let bob = a.register("bob", PW).await;
    let carol = b.register("carol", PW).await;

    let space = room(&a, &alice, "Space", "public_chat", true).await;
    let general = room(&a, &alice, "General", "public_chat", false).await;
    let random = room(&a, &alice, "Random", "public_chat", false).await;
    let secret = room(&a, &alice, "Secret", "private_chat", false).await;
    let sub = room(&a, &alice, "Sub", "public_chat", true).await;
    let deep = room(&a, &alice, "Deep", "public_chat", false).await;
    // Added in another order than their `order` fields, which decide.
    add_child(&a, &alice, &space, &sub, "d", false).await;
    add_child(&a, &alice, &space, &random, "b", true).await;
    add_child(&a, &alice, &space, &general, "a", false).await;
    add_child(&a, &alice, &space, &secret, "c", false).await;
    add_child(&a, &alice, &sub, &deep, "", false).await;

    // Breadth-first, the space first; bob (in none of them) does not see the private room.
    let (status, all) = hierarchy(&a, &bob, &space, "").await;
    assert_eq!(status, StatusCode::OK, "{all}");
    assert_eq!(names(&all), ["Space", "General", "Random", "Sub", "Deep"]);
    let top = &all["rooms"][0];
    assert_eq!(top["room_type"], "m.space");
    assert_eq!(
        top["children_state"].as_array().map(Vec::len),
        Some(4),
        "{top}"
    );
    assert!(
        top["children_state"][0]["origin_server_ts"].is_u64(),
        "{top}"
    );
    assert_eq!(top["num_joined_members"], 1);
    // Alice is in the private room, so she sees it.
    let (_, alices) = hierarchy(&a, &alice, &space, "").await;
    assert_eq!(
        names(&alices),
        ["Space", "General", "Random", "Secret", "Sub", "Deep"]
    );

    let (_, suggested) = hierarchy(&a, &bob, &space, "suggested_only=true").await;
    assert_eq!(names(&suggested), ["Space", "Random"]);
    let (_, shallow) = hierarchy(&a, &bob, &space, "max_depth=1").await;
    assert_eq!(names(&shallow), ["Space", "General", "Random", "Sub"]);

    // Pages of two cover the same rooms, each once.
    let mut paged = Vec::new();
    let mut from: Option<String> = None;
    for _ in 0..5 {
        let query = match &from {
            Some(f) => format!("limit=2&from={}", enc(f)),
            None => "limit=2".to_owned(),
        };
        let (status, page) = hierarchy(&a, &bob, &space, &query).await;
        assert_eq!(status, StatusCode::OK, "{page}");
        paged.extend(names(&page));
        from = page["next_batch"].as_str().map(str::to_owned);
        if from.is_none() {
            break;
        }
    }
    assert_eq!(paged, names(&all));
    let (status, body) = hierarchy(&a, &bob, &space, "from=nonsense").await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");

    // A private space is not shown to outsiders.
    let hidden = room(&a, &alice, "Hidden", "private_chat", true).await;
    let (status, body) = hierarchy(&a, &bob, &hidden, "").await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");

    // Carol joins the space from B; B is in none of its children, so A describes them.
    let (status, body) = b
        .post(
            &format!(
                "/_matrix/client/v3/join/{}?via={}",
                enc(&space),
                enc(a.server_name())
            ),
            carol.token(),
            &json!({}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let (status, remote) = hierarchy(&b, &carol, &space, "").await;
    assert_eq!(status, StatusCode::OK, "{remote}");
    let seen: BTreeSet<String> = names(&remote).into_iter().collect();
    let expected: BTreeSet<String> = ["Space", "General", "Random", "Sub", "Deep"]
        .into_iter()
        .map(str::to_owned)
        .collect();
    assert_eq!(
        seen, expected,
        "the private room stays hidden from B: {remote}"
    );
}
