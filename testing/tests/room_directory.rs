//! The public room directory: publishing rooms (`createRoom` with `visibility: public`,
//! `PUT /directory/list/room/{roomId}`), who may do so, and `/publicRooms` — locally with
//! pagination and filters, and from another server over federation.

use myelin_testing::http::{assert_err, assert_ok, C, PW};
use myelin_testing::{enc, TestServer};
use serde_json::{json, Value};

fn list_path(room_id: &str) -> String {
    format!("{C}/directory/list/room/{}", enc(room_id))
}

/// The room IDs of a `/publicRooms` answer's chunk, in order.
fn room_ids(answer: &Value) -> Vec<String> {
    answer["chunk"]
        .as_array()
        .unwrap_or_else(|| panic!("no chunk in {answer}"))
        .iter()
        .map(|r| r["room_id"].as_str().expect("room_id").to_owned())
        .collect()
}

async fn visibility(s: &TestServer, room_id: &str) -> String {
    let resp = s.get(&list_path(room_id), None).await;
    assert_ok(&resp, "GET directory/list/room");
    resp.1["visibility"]
        .as_str()
        .expect("visibility")
        .to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn publishing_and_listing_rooms() {
    let s = TestServer::start().await;
    let alice = s.register("alice", PW).await;
    let bob = s.register("bob", PW).await;
    let carol = s.register("carol", PW).await;

    // createRoom with visibility public publishes the room, with its name and topic.
    let public = s
        .create_room(
            &alice.access_token,
            &json!({
                "visibility": "public",
                "name": "Gardening Club",
                "topic": "All about Tomatoes",
                "room_alias_name": "garden",
            }),
        )
        .await;
    let private = s
        .create_room(&alice.access_token, &json!({ "name": "Secret" }))
        .await;
    assert_eq!(visibility(&s, &public).await, "public");
    assert_eq!(visibility(&s, &private).await, "private");

    // Unauthenticated GET /publicRooms lists it with the spec's fields.
    let resp = s.get(&format!("{C}/publicRooms"), None).await;
    assert_ok(&resp, "GET /publicRooms");
    assert_eq!(room_ids(&resp.1), [public.as_str()]);
    let entry = &resp.1["chunk"][0];
    assert_eq!(entry["name"], "Gardening Club");
    assert_eq!(entry["topic"], "All about Tomatoes");
    assert_eq!(entry["num_joined_members"], 1);
    assert_eq!(entry["world_readable"], false);
    assert_eq!(entry["guest_can_join"], false);
    assert_eq!(entry["join_rule"], "public");
    assert_eq!(
        entry["canonical_alias"],
        format!("#garden:{}", s.server_name())
    );
    assert_eq!(resp.1["total_room_count_estimate"], 1);
    assert!(resp.1.get("next_batch").is_none(), "{}", resp.1);

    // PUT list/room publishes the private room (the creator has the power to).
    let resp = s
        .put(
            &list_path(&private),
            alice.token(),
            &json!({ "visibility": "public" }),
        )
        .await;
    assert_ok(&resp, "PUT visibility public");
    assert_eq!(resp.1, json!({}));
    assert_eq!(visibility(&s, &private).await, "public");

    // Bob joins the first room: it now has more members and sorts first.
    s.join(&bob.access_token, &public).await;
    let resp = s.get(&format!("{C}/publicRooms"), None).await;
    assert_eq!(room_ids(&resp.1), [public.clone(), private.clone()]);
    assert_eq!(resp.1["chunk"][0]["num_joined_members"], 2);

    // A non-member and an underpowered member may not change the visibility.
    let resp = s
        .put(
            &list_path(&public),
            carol.token(),
            &json!({ "visibility": "private" }),
        )
        .await;
    assert_err(&resp, 403, "M_FORBIDDEN", "non-member PUT");
    let resp = s
        .put(
            &list_path(&public),
            bob.token(),
            &json!({ "visibility": "private" }),
        )
        .await;
    assert_err(&resp, 403, "M_FORBIDDEN", "underpowered member PUT");
    assert_eq!(visibility(&s, &public).await, "public");

    // Unknown rooms are not found; a bad visibility is bad JSON.
    let unknown = format!("!nosuchroom:{}", s.server_name());
    assert_err(
        &s.get(&list_path(&unknown), None).await,
        404,
        "M_NOT_FOUND",
        "GET unknown room",
    );
    assert_err(
        &s.put(
            &list_path(&unknown),
            alice.token(),
            &json!({ "visibility": "public" }),
        )
        .await,
        404,
        "M_NOT_FOUND",
        "PUT unknown room",
    );
    assert_err(
        &s.put(
            &list_path(&public),
            alice.token(),
            &json!({ "visibility": "loud" }),
        )
        .await,
        400,
        "M_BAD_JSON",
        "PUT bad visibility",
    );
    // PUT needs authentication.
    assert_err(
        &s.put(
            &list_path(&public),
            None,
            &json!({ "visibility": "private" }),
        )
        .await,
        401,
        "M_MISSING_TOKEN",
        "PUT without token",
    );

    // A third room for pagination (no name: sorted by room ID among the one-member rooms).
    let third = s
        .create_room(
            &alice.access_token,
            &json!({ "visibility": "public", "topic": "Quiet corner" }),
        )
        .await;
    let mut one_member = vec![private.clone(), third.clone()];
    one_member.sort();
    let expected = [vec![public.clone()], one_member].concat();
    let resp = s.get(&format!("{C}/publicRooms"), None).await;
    assert_eq!(room_ids(&resp.1), expected);

    // limit/since: two pages, each linking to the other.
    let page1 = s.get(&format!("{C}/publicRooms?limit=2"), None).await;
    assert_ok(&page1, "page 1");
    assert_eq!(room_ids(&page1.1), expected[..2]);
    assert_eq!(page1.1["total_room_count_estimate"], 3);
    assert!(page1.1.get("prev_batch").is_none(), "{}", page1.1);
    let next = page1.1["next_batch"]
        .as_str()
        .expect("next_batch")
        .to_owned();
    let page2 = s
        .get(
            &format!("{C}/publicRooms?limit=2&since={}", enc(&next)),
            None,
        )
        .await;
    assert_ok(&page2, "page 2");
    assert_eq!(room_ids(&page2.1), expected[2..]);
    assert!(page2.1.get("next_batch").is_none(), "{}", page2.1);
    let prev = page2.1["prev_batch"]
        .as_str()
        .expect("prev_batch")
        .to_owned();
    let back = s
        .get(
            &format!("{C}/publicRooms?limit=2&since={}", enc(&prev)),
            None,
        )
        .await;
    assert_eq!(room_ids(&back.1), expected[..2]);
    // POST paginates the same way.
    let page2_post = s
        .post(
            &format!("{C}/publicRooms"),
            alice.token(),
            &json!({ "limit": 2, "since": next }),
        )
        .await;
    assert_ok(&page2_post, "POST page 2");
    assert_eq!(room_ids(&page2_post.1), expected[2..]);
    assert_err(
        &s.get(&format!("{C}/publicRooms?since=garbage"), None).await,
        400,
        "M_INVALID_PARAM",
        "bad since token",
    );

    // Search: case-insensitive, over name, topic, alias and room ID.
    let search = |term: &str| json!({ "filter": { "generic_search_term": term } });
    for (term, wanted) in [
        ("gardening", vec![public.clone()]),
        ("TOMATO", vec![public.clone()]),
        ("#GARDEN", vec![public.clone()]),
        ("quiet", vec![third.clone()]),
        ("nothing matches this", vec![]),
    ] {
        let resp = s
            .post(&format!("{C}/publicRooms"), alice.token(), &search(term))
            .await;
        assert_ok(&resp, &format!("search {term}"));
        assert_eq!(room_ids(&resp.1), wanted, "search {term}");
    }
    let resp = s
        .post(
            &format!("{C}/publicRooms"),
            alice.token(),
            &search(&third[1..8].to_uppercase()),
        )
        .await;
    assert!(room_ids(&resp.1).contains(&third), "search by room ID");
    // POST needs authentication.
    assert_err(
        &s.post(&format!("{C}/publicRooms"), None, &search("x"))
            .await,
        401,
        "M_MISSING_TOKEN",
        "POST without token",
    );

    // room_types: a space is only listed when asked for; `null` stands for untyped rooms.
    let space = s
        .create_room(
            &alice.access_token,
            &json!({
                "visibility": "public",
                "name": "A Space",
                "creation_content": { "type": "m.space" },
            }),
        )
        .await;
    let by_types = |types: Value| json!({ "filter": { "room_types": types } });
    let resp = s
        .post(
            &format!("{C}/publicRooms"),
            alice.token(),
            &by_types(json!(["m.space"])),
        )
        .await;
    assert_eq!(room_ids(&resp.1), [space.as_str()]);
    assert_eq!(resp.1["chunk"][0]["room_type"], "m.space");
    let resp = s
        .post(
            &format!("{C}/publicRooms"),
            alice.token(),
            &by_types(json!([null])),
        )
        .await;
    assert_eq!(room_ids(&resp.1), expected);
    let resp = s.get(&format!("{C}/publicRooms"), None).await;
    assert_eq!(resp.1["total_room_count_estimate"], 4);

    // Unpublishing removes the room from the list.
    let resp = s
        .put(
            &list_path(&public),
            alice.token(),
            &json!({ "visibility": "private" }),
        )
        .await;
    assert_ok(&resp, "PUT visibility private");
    assert_eq!(visibility(&s, &public).await, "private");
    let resp = s.get(&format!("{C}/publicRooms"), None).await;
    assert!(!room_ids(&resp.1).contains(&public), "{}", resp.1);
    assert_eq!(resp.1["total_room_count_estimate"], 3);

    // Our own server name is the local list.
    let resp = s
        .get(
            &format!("{C}/publicRooms?server={}", enc(s.server_name())),
            None,
        )
        .await;
    assert_ok(&resp, "server=own name");
    assert_eq!(resp.1["total_room_count_estimate"], 3);

    // The published flag survives a restart.
    let s = s.restarted().await;
    assert_eq!(visibility(&s, &private).await, "public");
    assert_eq!(visibility(&s, &public).await, "private");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn public_rooms_of_another_server() {
    let a = TestServer::start_federating().await;
    let b = TestServer::start_federating().await;
    let alice = a.register("alice", PW).await;
    let bob = b.register("bob", PW).await;
    let room = a
        .create_room(
            &alice.access_token,
            &json!({ "visibility": "public", "name": "Over There" }),
        )
        .await;
    a.create_room(&alice.access_token, &json!({ "name": "Not listed" }))
        .await;

    let server = enc(a.loopback_server_name());
    let resp = b
        .get(&format!("{C}/publicRooms?server={server}"), bob.token())
        .await;
    assert_ok(&resp, "GET /publicRooms?server=A");
    assert_eq!(room_ids(&resp.1), [room.as_str()]);
    assert_eq!(resp.1["chunk"][0]["name"], "Over There");
    // B's own list does not have it.
    let resp = b.get(&format!("{C}/publicRooms"), None).await;
    assert_eq!(room_ids(&resp.1), Vec::<String>::new());

    // POST with a filter goes to A's POST /publicRooms.
    let resp = b
        .post(
            &format!("{C}/publicRooms?server={server}"),
            bob.token(),
            &json!({ "filter": { "generic_search_term": "over" } }),
        )
        .await;
    assert_ok(&resp, "POST /publicRooms?server=A");
    assert_eq!(room_ids(&resp.1), [room]);
    let resp = b
        .post(
            &format!("{C}/publicRooms?server={server}"),
            bob.token(),
            &json!({ "filter": { "generic_search_term": "absent" } }),
        )
        .await;
    assert_eq!(room_ids(&resp.1), Vec::<String>::new());

    // The federation endpoint needs a signed request.
    let resp = b.get("/_matrix/federation/v1/publicRooms", None).await;
    assert_eq!(resp.0.as_u16(), 401, "{}", resp.1);
}
