//! Extended profiles (spec v1.16) over HTTP: custom fields such as `m.tz` set, read, removed,
//! with the spec's errors for bad keys and sizes, and read by another server over federation.

use myelin_testing::http::{assert_err, assert_ok, register};
use myelin_testing::{enc, TestServer};
use serde_json::json;

#[tokio::test]
async fn custom_fields_with_their_limits() {
    let s = TestServer::start().await;
    let (alice, bob) = (register(&s, "alice").await, register(&s, "bob").await);
    let (at, bt) = (alice.token().expect("token"), bob.token().expect("token"));
    let field = |key: &str| format!("/_matrix/client/v3/profile/{}/{}", enc(&alice.user_id), key);

    let caps = s.get("/_matrix/client/v3/capabilities", Some(at)).await;
    assert_eq!(caps.1["capabilities"]["m.profile_fields"]["enabled"], true);

    assert_ok(
        &s.put(
            &field("m.tz"),
            Some(at),
            &json!({ "m.tz": "Europe/London" }),
        )
        .await,
        "set m.tz",
    );
    let pets = json!({ "cats": 2 });
    assert_ok(
        &s.put(
            &field("org.example.pets"),
            Some(at),
            &json!({ "org.example.pets": pets }),
        )
        .await,
        "set a custom field of any JSON type",
    );
    let profile = s
        .get(
            &format!("/_matrix/client/v3/profile/{}", enc(&alice.user_id)),
            None,
        )
        .await;
    assert_eq!(profile.1["m.tz"], "Europe/London");
    assert_eq!(profile.1["org.example.pets"], pets);
    assert_eq!(profile.1["displayname"], "alice");
    assert_eq!(
        s.get(&field("m.tz"), None).await.1,
        json!({ "m.tz": "Europe/London" })
    );

    assert_ok(
        &s.delete(&field("org.example.pets"), Some(at), &json!({}))
            .await,
        "remove a field",
    );
    assert_err(
        &s.get(&field("org.example.pets"), None).await,
        404,
        "M_NOT_FOUND",
        "a removed field",
    );

    assert_err(
        &s.put(&field("m.tz"), Some(bt), &json!({ "m.tz": "UTC" }))
            .await,
        403,
        "M_FORBIDDEN",
        "someone else's profile",
    );
    assert_err(
        &s.put(&field("m.tz"), Some(at), &json!({ "other": "UTC" }))
            .await,
        400,
        "M_MISSING_PARAM",
        "a body without the key",
    );
    assert_err(
        &s.put(&field("m.tz"), Some(at), &json!({ "m.tz": 5 })).await,
        400,
        "M_BAD_JSON",
        "m.tz that is not a string",
    );
    assert_err(
        &s.put(
            &field("NotNamespaced"),
            Some(at),
            &json!({ "NotNamespaced": 1 }),
        )
        .await,
        400,
        "M_INVALID_PARAM",
        "a key outside the grammar",
    );
    let long = format!("org.{}", "a".repeat(300));
    assert_err(
        &s.put(&field(&long), Some(at), &json!({ long.clone(): 1 }))
            .await,
        400,
        "M_KEY_TOO_LARGE",
        "a key over 255 bytes",
    );
    // Two fields of 40 KiB do not fit in one 64 KiB profile.
    let big = "x".repeat(40 * 1024);
    assert_ok(
        &s.put(
            &field("org.example.a"),
            Some(at),
            &json!({ "org.example.a": big }),
        )
        .await,
        "40 KiB",
    );
    assert_err(
        &s.put(
            &field("org.example.b"),
            Some(at),
            &json!({ "org.example.b": big }),
        )
        .await,
        400,
        "M_PROFILE_TOO_LARGE",
        "a profile over 64 KiB",
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn another_server_reads_the_custom_fields() {
    let a = TestServer::start_federating().await;
    let b = TestServer::start_federating().await;
    let alice = a.register("alice", "hunter2-hunter2").await;
    let bob = b.register("bob", "hunter2-hunter2").await;
    let path = format!("/_matrix/client/v3/profile/{}/m.tz", enc(&alice.user_id));
    assert_ok(
        &a.put(&path, alice.token(), &json!({ "m.tz": "Asia/Tokyo" }))
            .await,
        "set m.tz",
    );
    let (status, profile) = b
        .get(
            &format!("/_matrix/client/v3/profile/{}", enc(&alice.user_id)),
            bob.token(),
        )
        .await;
    assert_eq!(status, 200, "{profile}");
    assert_eq!(profile["m.tz"], "Asia/Tokyo");
    assert_eq!(profile["displayname"], "alice");
}
