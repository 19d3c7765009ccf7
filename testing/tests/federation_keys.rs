//! Federation groundwork between two servers on loopback: publishing and fetching keys (directly
//! and through a notary), and `X-Matrix` request authentication in both directions.
//!
//! The servers talk plain HTTP on 127.0.0.1, which only `TestServer::start_federating`'s
//! `plain_http_servers` / `allow_private_destinations` settings permit.

use std::sync::Arc;

use myelin_federation::auth::{sign_request, RequestToSign};
use myelin_federation::client::Signer;
use myelin_federation::keys::{verify_server_keys, verify_signature};
use myelin_federation::ruma::OwnedServerName;
use myelin_federation::{FederationClient, FederationConfig, RequestError};
use myelin_testing::federation::{name, now_ms, object};
use myelin_testing::hostile::server_key;
use myelin_testing::{enc, StatusCode, TestServer};
use serde_json::{json, Value};

/// A federation client that may reach test servers on loopback.
fn loopback_client() -> FederationClient {
    let config = FederationConfig {
        allow_private_destinations: true,
        plain_http_servers: vec!["127.0.0.1".into()],
        ..FederationConfig::default()
    };
    let lookup = Arc::new(myelin_federation::client::SystemLookup::new(&config));
    FederationClient::new(&config, lookup, Arc::new(myelin_federation::SystemClock))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keys_are_published_fetched_and_notarised() {
    let a = TestServer::start_federating().await;
    let b = TestServer::start_federating().await;
    let (a_name, b_name) = (
        name(a.loopback_server_name()),
        name(b.loopback_server_name()),
    );

    let (status, version) = b.get("/_matrix/federation/v1/version", None).await;
    assert_eq!(status, StatusCode::OK, "{version}");
    assert_eq!(version["server"]["name"], "Myelin");
    assert!(version["server"]["version"].is_string(), "{version}");

    // B publishes self-signed keys, valid for the configured period.
    let (status, b_keys) = b.get("/_matrix/key/v2/server", None).await;
    assert_eq!(status, StatusCode::OK, "{b_keys}");
    let b_keys = verify_server_keys(&b_name, object(&b_keys)).expect("B's keys are self-signed");
    let validity = FederationConfig::default().key_validity_ms;
    assert!(
        b_keys.valid_until_ts > now_ms() + validity - 60_000,
        "{}",
        b_keys.valid_until_ts
    );
    assert_eq!(b_keys.verify_keys.len(), 1);
    let (status, by_id) = b.get("/_matrix/key/v2/server/ed25519:whatever", None).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(by_id["server_name"], b_name.as_str());

    let (_, a_keys) = a.get("/_matrix/key/v2/server", None).await;
    let a_keys = verify_server_keys(&a_name, object(&a_keys)).expect("A's keys are self-signed");
    let (a_key_id, a_public) = a_keys.verify_keys.iter().next().expect("one key");
    assert_eq!(
        myelin_federation::keys::public_key_base64(&server_key(&a)),
        *a_public,
        "the published key is the one in the data directory"
    );

    // A as a notary for B: it fetches B's keys directly and adds its own signature.
    let path = format!("/_matrix/key/v2/query/{}", enc(b_name.as_str()));
    let (status, notarised) = a.get(&path, None).await;
    assert_eq!(status, StatusCode::OK, "{notarised}");
    let list = notarised["server_keys"]
        .as_array()
        .expect("server_keys array");
    assert_eq!(list.len(), 1, "{notarised}");
    let relayed = object(&list[0]);
    verify_signature(&relayed, a_name.as_str(), a_key_id, a_public)
        .expect("signed by the notary A");
    let relayed = verify_server_keys(&b_name, relayed).expect("still self-signed by B");
    assert_eq!(relayed.verify_keys, b_keys.verify_keys);

    // The batch form, for B and for A itself.
    let (status, batch) = a
        .post(
            "/_matrix/key/v2/query",
            None,
            &json!({ "server_keys": { b_name.as_str(): {}, a_name.as_str(): { a_key_id.as_str(): { "minimum_valid_until_ts": now_ms() } } } }),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{batch}");
    let mut servers: Vec<&str> = batch["server_keys"]
        .as_array()
        .expect("server_keys array")
        .iter()
        .map(|k| k["server_name"].as_str().expect("server_name"))
        .collect();
    servers.sort();
    let mut expected = vec![a_name.as_str(), b_name.as_str()];
    expected.sort();
    assert_eq!(servers, expected);

    // A server that keeps the default (no private destinations) refuses to fetch from loopback.
    let strict = TestServer::start_with(|c| c.server_name = "strict.test".into()).await;
    let (status, none) = strict.get(&path, None).await;
    assert_eq!(status, StatusCode::OK, "{none}");
    assert_eq!(
        none["server_keys"],
        json!([]),
        "a default server must not reach loopback"
    );

    strict.stop().await;
    a.stop().await;
    b.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn x_matrix_requests_are_verified_against_fetched_keys() {
    let a = TestServer::start_federating().await;
    let b = TestServer::start_federating().await;
    let (a_name, b_name) = (
        name(a.loopback_server_name()),
        name(b.loopback_server_name()),
    );
    let bob = b.register("bob", "hunter2-hunter2").await;
    let (status, _) = b
        .put(
            &format!(
                "/_matrix/client/v3/profile/{}/displayname",
                enc(&bob.user_id)
            ),
            bob.token(),
            &json!({ "displayname": "Bob" }),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    // A has answered, so its key file exists and is only read here.
    let (status, _) = a.get("/_matrix/federation/v1/version", None).await;
    assert_eq!(status, StatusCode::OK);
    let a_key = server_key(&a);

    // A (through the production client: resolution, pinning, signing) asks B for Bob's profile;
    // B fetches A's key from A to check the signature.
    let client = loopback_client();
    let path = format!(
        "/_matrix/federation/v1/query/profile?user_id={}&field=displayname",
        enc(&bob.user_id)
    );
    let profile = client
        .request_json(
            reqwest::Method::GET,
            &b_name,
            &path,
            None,
            Some(Signer {
                origin: &a_name,
                key: &a_key,
            }),
        )
        .await
        .expect("B accepts A's signed request");
    assert_eq!(
        serde_json::to_value(&profile).expect("json"),
        json!({ "displayname": "Bob" })
    );

    // Refusals, all 401 M_UNAUTHORIZED.
    let signed_header = |method: &str, uri: &str, destination: &OwnedServerName| {
        sign_request(
            &RequestToSign {
                method,
                uri,
                origin: &a_name,
                destination,
                content: None,
            },
            &a_key,
        )
        .expect("signs")
        .to_string()
    };
    let raw = reqwest::Client::new();
    let send = |header: Option<String>, uri: String| {
        let mut request = raw.get(format!("{}{uri}", b.base_url()));
        if let Some(header) = header {
            request = request.header("authorization", header);
        }
        async move {
            let response = request.send().await.expect("request");
            let status = response.status();
            (
                status,
                response.json::<Value>().await.unwrap_or(Value::Null),
            )
        }
    };
    let ok = send(Some(signed_header("GET", &path, &b_name)), path.clone()).await;
    assert_eq!(ok.0, StatusCode::OK, "{}", ok.1);

    let other = format!(
        "/_matrix/federation/v1/query/profile?user_id={}",
        enc(&bob.user_id)
    );
    let cases = [
        ("no header", None, path.clone()),
        (
            "wrong destination",
            Some(signed_header("GET", &path, &name("elsewhere.example"))),
            path.clone(),
        ),
        (
            "another URI",
            Some(signed_header("GET", &path, &b_name)),
            other,
        ),
        (
            "another method",
            Some(signed_header("PUT", &path, &b_name)),
            path.clone(),
        ),
        (
            "unknown key",
            Some(signed_header("GET", &path, &b_name).replace("ed25519:", "ed25519:nope")),
            path.clone(),
        ),
        (
            "unreachable origin",
            Some(signed_header("GET", &path, &b_name).replace(a_name.as_str(), "127.0.0.1:9")),
            path.clone(),
        ),
        ("garbage", Some("X-Matrix origin=".to_owned()), path.clone()),
    ];
    for (what, header, uri) in cases {
        let (status, body) = send(header, uri).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{what}: {body}");
        assert_eq!(body["errcode"], "M_UNAUTHORIZED", "{what}: {body}");
    }

    // The client refuses loopback destinations unless configured.
    let strict = FederationClient::new(
        &FederationConfig::default(),
        Arc::new(myelin_federation::client::SystemLookup::new(
            &FederationConfig::default(),
        )),
        Arc::new(myelin_federation::SystemClock),
    );
    let refused = strict
        .request_json(
            reqwest::Method::GET,
            &b_name,
            "/_matrix/federation/v1/version",
            None,
            None,
        )
        .await;
    assert!(
        matches!(refused, Err(RequestError::ForbiddenDestination { .. })),
        "{refused:?}"
    );

    a.stop().await;
    b.stop().await;
}
