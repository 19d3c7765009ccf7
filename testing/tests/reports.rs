//! Reporting content over HTTP: event, room and user reports, their errors, and that a
//! non-member cannot tell whether an event exists from the answer.

use myelin_testing::http::{assert_err, assert_ok, register, room_path};
use myelin_testing::{enc, TestServer};
use serde_json::json;

#[tokio::test]
async fn reports_and_their_errors() {
    let s = TestServer::start().await;
    let (alice, eve) = (register(&s, "alice").await, register(&s, "eve").await);
    let (at, et) = (alice.token().expect("token"), eve.token().expect("token"));
    let room = s
        .create_room(at, &json!({ "preset": "private_chat" }))
        .await;
    let event = s.send_message(at, &room, "t1", "reportable").await;

    let report_event = |token: &str, event: &str, body: serde_json::Value| {
        let path = room_path(&room, &format!("report/{}", enc(event)));
        let (s, token) = (&s, token.to_owned());
        async move { s.post(&path, Some(&token), &body).await }
    };
    assert_ok(
        &report_event(at, &event, json!({ "reason": "test", "score": -50 })).await,
        "a member reports an event",
    );
    assert_err(
        &report_event(at, &event, json!({ "score": 10 })).await,
        400,
        "M_INVALID_PARAM",
        "a score out of range",
    );
    // A stranger gets the same answer for an event that exists and one that does not.
    let existing = report_event(et, &event, json!({})).await;
    let missing = report_event(et, "$missing:localhost", json!({})).await;
    assert_err(
        &existing,
        404,
        "M_NOT_FOUND",
        "an existing event, to a stranger",
    );
    assert_err(&missing, 404, "M_NOT_FOUND", "a missing event");
    assert_eq!(existing.1, missing.1);

    let room_report = s
        .post(
            &room_path(&room, "report"),
            Some(et),
            &json!({ "reason": "bad room" }),
        )
        .await;
    assert_ok(&room_report, "any user reports a room the server knows");
    let unknown_room = s
        .post(
            &room_path("!nowhere:localhost", "report"),
            Some(et),
            &json!({}),
        )
        .await;
    assert_err(&unknown_room, 404, "M_NOT_FOUND", "an unknown room");

    let user_path = |user: &str| format!("/_matrix/client/v3/users/{}/report", enc(user));
    assert_ok(
        &s.post(
            &user_path(&alice.user_id),
            Some(et),
            &json!({ "reason": "rude" }),
        )
        .await,
        "a user report",
    );
    let nobody = format!("@nobody:{}", s.server_name());
    assert_err(
        &s.post(&user_path(&nobody), Some(et), &json!({})).await,
        404,
        "M_NOT_FOUND",
        "an unknown local user",
    );
    assert_err(
        &s.post(&room_path(&room, "report"), None, &json!({})).await,
        401,
        "M_MISSING_TOKEN",
        "reports need a login",
    );
}
