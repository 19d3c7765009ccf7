//! Server-side search over HTTP, with matrix-sdk as the client: results only from rooms and
//! events the searcher may see, both orders with `next_batch`, context, and the spec's errors.

use matrix_sdk::ruma::api::client::search::search_events::v3::{
    Categories, Criteria, OrderBy, Request,
};
use matrix_sdk::Client;
use myelin_testing::http::{assert_err, register, room_path, PW};
use myelin_testing::TestServer;
use serde_json::json;

#[tokio::test]
async fn matrix_sdk_searches_what_its_user_may_see() {
    let s = TestServer::start().await;
    let (alice, bob) = (register(&s, "alice").await, register(&s, "bob").await);
    let (at, bt) = (alice.token().expect("token"), bob.token().expect("token"));
    let shared = s.create_room(at, &json!({ "preset": "public_chat" })).await;
    s.join(bt, &shared).await;
    s.send_message(at, &shared, "t1", "The quarterly report is ready")
        .await;
    s.send_message(bt, &shared, "t2", "reports are boring")
        .await;
    s.send_message(at, &shared, "t3", "lunch?").await;
    let secret = s
        .create_room(at, &json!({ "preset": "private_chat" }))
        .await;
    s.send_message(at, &secret, "t4", "secret report").await;

    let client = Client::builder()
        .homeserver_url(s.base_url())
        .build()
        .await
        .expect("client");
    client
        .matrix_auth()
        .login_username("bob", PW)
        .send()
        .await
        .expect("login");
    let mut criteria = Criteria::new("report".to_owned());
    criteria.order_by = Some(OrderBy::Recent);
    let mut categories = Categories::new();
    categories.room_events = Some(criteria);
    let response = client.send(Request::new(categories)).await.expect("search");
    let found: Vec<String> = response
        .search_categories
        .room_events
        .results
        .iter()
        .filter_map(|r| r.result.as_ref())
        .filter_map(|e| e.get_field::<serde_json::Value>("content").ok().flatten())
        .filter_map(|c| c["body"].as_str().map(str::to_owned))
        .collect();
    assert_eq!(
        found,
        ["reports are boring", "The quarterly report is ready"],
        "prefix matches, newest first, nothing from alice's private room"
    );
    assert_eq!(
        response.search_categories.room_events.count,
        Some(2u32.into())
    );

    // Raw HTTP: a page at a time, and the errors.
    let body = json!({ "search_categories": { "room_events": {
        "search_term": "report", "filter": { "limit": 1 },
        "event_context": { "before_limit": 1, "after_limit": 1 }
    } } });
    let (status, first) = s.post("/_matrix/client/v3/search", Some(bt), &body).await;
    assert_eq!(status, 200, "{first}");
    let events = &first["search_categories"]["room_events"];
    assert_eq!(events["results"].as_array().expect("results").len(), 1);
    assert!(events["results"][0]["context"]["events_after"].is_array());
    let next = events["next_batch"].as_str().expect("a second page");
    let (status, second) = s
        .post(
            &format!("/_matrix/client/v3/search?next_batch={next}"),
            Some(bt),
            &body,
        )
        .await;
    assert_eq!(status, 200, "{second}");
    assert_ne!(
        second["search_categories"]["room_events"]["results"][0]["result"]["event_id"],
        events["results"][0]["result"]["event_id"]
    );
    assert_err(
        &s.post(
            "/_matrix/client/v3/search",
            Some(bt),
            &json!({ "search_categories": { "room_events": { "search_term": "x", "order_by": "sideways" } } }),
        )
        .await,
        400,
        "M_INVALID_PARAM",
        "an unknown order_by",
    );
    assert_err(
        &s.post("/_matrix/client/v3/search", Some(bt), &json!({}))
            .await,
        400,
        "M_BAD_JSON",
        "no search_categories",
    );
    // A redacted message is no longer found.
    let (status, listed) = s
        .post(
            "/_matrix/client/v3/search",
            Some(at),
            &json!({ "search_categories": { "room_events": { "search_term": "lunch" } } }),
        )
        .await;
    assert_eq!(status, 200);
    let lunch = listed["search_categories"]["room_events"]["results"][0]["result"]["event_id"]
        .as_str()
        .expect("lunch found")
        .to_owned();
    let (status, _) = s
        .put(
            &room_path(
                &shared,
                &format!("redact/{}/r1", myelin_testing::enc(&lunch)),
            ),
            Some(at),
            &json!({}),
        )
        .await;
    assert_eq!(status, 200);
    let (_, after) = s
        .post(
            "/_matrix/client/v3/search",
            Some(at),
            &json!({ "search_categories": { "room_events": { "search_term": "lunch" } } }),
        )
        .await;
    assert_eq!(after["search_categories"]["room_events"]["count"], 0);
}
