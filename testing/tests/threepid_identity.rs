//! Identity servers (issue 17) against the identity-server stub on loopback (allowed through
//! `[egress]`): binding and unbinding addresses (`/account/3pid/bind`, `/unbind`, the unbind of
//! `/delete`), remembering where each was bound, the spec's errors, and refusing identity
//! servers on private addresses.

use myelin_testing::http::{assert_err, assert_ok, register, C};
use myelin_testing::identity::{IdentityStub, IS_TOKEN};
use myelin_testing::{Config, TestServer};
use serde_json::{json, Value};

fn allow_stub(config: &mut Config) {
    config.egress.allow = vec!["127.0.0.1".into()];
}

fn bind_body(stub: &IdentityStub, sid: &str) -> Value {
    json!({
        "id_server": stub.name, "id_access_token": IS_TOKEN,
        "sid": sid, "client_secret": "secret",
    })
}

#[tokio::test]
async fn bind_and_unbind_go_to_the_identity_server_that_was_used() {
    let stub = IdentityStub::start().await;
    let s = TestServer::start_with(allow_stub).await;
    let alice = register(&s, "alice").await;
    let at = alice.token().expect("token");
    stub.validated_session("sid-1", "secret", "alice@example.org");

    assert_ok(
        &s.post(
            &format!("{C}/account/3pid/bind"),
            Some(at),
            &bind_body(&stub, "sid-1"),
        )
        .await,
        "bind",
    );
    assert_eq!(
        stub.bound_to("alice@example.org").as_deref(),
        Some(alice.user_id.as_str())
    );
    let bind = &stub.requests_to("/3pid/bind")[0];
    assert_eq!(bind.body["mxid"], alice.user_id.as_str());
    assert_eq!(
        bind.authorization.as_deref(),
        Some(format!("Bearer {IS_TOKEN}").as_str())
    );

    // Unbinding without id_server goes to the server the address was bound on, signed by us.
    let unbind = json!({ "medium": "email", "address": "alice@example.org" });
    let (status, body) = s
        .post(&format!("{C}/account/3pid/unbind"), Some(at), &unbind)
        .await;
    assert_eq!(
        (status.as_u16(), &body["id_server_unbind_result"]),
        (200, &json!("success"))
    );
    assert_eq!(stub.bound_to("alice@example.org"), None);
    let signed = &stub.requests_to("/3pid/unbind")[0];
    let auth = signed.authorization.as_deref().unwrap_or_default();
    assert!(auth.starts_with("X-Matrix origin="), "{auth}");
    assert!(
        auth.contains(&format!("destination=\"{}\"", stub.name)),
        "{auth}"
    );
    assert_eq!(signed.body["mxid"], alice.user_id.as_str());

    // Now nothing is remembered: no-support, and no request.
    let (status, body) = s
        .post(&format!("{C}/account/3pid/unbind"), Some(at), &unbind)
        .await;
    assert_eq!(
        (status.as_u16(), &body["id_server_unbind_result"]),
        (200, &json!("no-support"))
    );
    assert_eq!(stub.requests_to("/3pid/unbind").len(), 1);
}

#[tokio::test]
async fn delete_unbinds_from_the_remembered_identity_server() {
    let stub = IdentityStub::start().await;
    let s = TestServer::start_with(allow_stub).await;
    let bob = register(&s, "bob").await;
    let bt = bob.token().expect("token");
    stub.validated_session("sid-b", "secret", "bob@example.org");
    assert_ok(
        &s.post(
            &format!("{C}/account/3pid/bind"),
            Some(bt),
            &bind_body(&stub, "sid-b"),
        )
        .await,
        "bind",
    );
    let (status, body) = s
        .post(
            &format!("{C}/account/3pid/delete"),
            Some(bt),
            &json!({ "medium": "email", "address": "bob@example.org" }),
        )
        .await;
    assert_eq!(
        (status.as_u16(), &body["id_server_unbind_result"]),
        (200, &json!("success"))
    );
    assert_eq!(stub.bound_to("bob@example.org"), None);
    // Neither on the account nor bound anywhere any more.
    assert_err(
        &s.post(
            &format!("{C}/account/3pid/delete"),
            Some(bt),
            &json!({ "medium": "email", "address": "bob@example.org" }),
        )
        .await,
        404,
        "M_NOT_FOUND",
        "deleting an unknown address",
    );
}

#[tokio::test]
async fn identity_server_errors_and_bad_parameters() {
    let stub = IdentityStub::start().await;
    let s = TestServer::start_with(allow_stub).await;
    let carol = register(&s, "carol").await;
    let ct = carol.token().expect("token");
    let bind = format!("{C}/account/3pid/bind");

    // The identity server's own error is passed on.
    assert_err(
        &s.post(&bind, Some(ct), &bind_body(&stub, "no-such-sid"))
            .await,
        404,
        "M_NO_VALID_SESSION",
        "a session the identity server does not know",
    );
    let mut wrong_token = bind_body(&stub, "sid");
    wrong_token["id_access_token"] = json!("wrong");
    assert_err(
        &s.post(&bind, Some(ct), &wrong_token).await,
        401,
        "M_UNAUTHORIZED",
        "an identity access token the identity server refuses",
    );
    for field in ["id_server", "id_access_token", "sid", "client_secret"] {
        let mut body = bind_body(&stub, "sid");
        body.as_object_mut().expect("object").remove(field);
        assert_err(
            &s.post(&bind, Some(ct), &body).await,
            400,
            "M_MISSING_PARAM",
            &format!("bind without {field}"),
        );
    }
    for bad in [
        "https://example.org",
        "example.org/path",
        "",
        "exa mple.org",
    ] {
        let mut body = bind_body(&stub, "sid");
        body["id_server"] = json!(bad);
        assert_err(
            &s.post(&bind, Some(ct), &body).await,
            400,
            "M_INVALID_PARAM",
            &format!("id_server {bad:?}"),
        );
    }
    let mut not_string = bind_body(&stub, "sid");
    not_string["sid"] = json!(5);
    assert_err(
        &s.post(&bind, Some(ct), &not_string).await,
        400,
        "M_BAD_JSON",
        "a sid that is not a string",
    );
    assert_err(
        &s.post(
            &format!("{C}/account/3pid/unbind"),
            Some(ct),
            &json!({ "medium": "email" }),
        )
        .await,
        400,
        "M_MISSING_PARAM",
        "unbind without address",
    );
    assert_err(
        &s.post(&bind, None, &bind_body(&stub, "sid")).await,
        401,
        "M_MISSING_TOKEN",
        "bind without an access token",
    );
}

#[tokio::test]
async fn identity_servers_on_private_addresses_are_refused() {
    let stub = IdentityStub::start().await;
    // No [egress] allowance: loopback is not reachable.
    let s = TestServer::start().await;
    let dave = register(&s, "dave").await;
    let dt = dave.token().expect("token");
    stub.validated_session("sid-d", "secret", "dave@example.org");
    assert_err(
        &s.post(
            &format!("{C}/account/3pid/bind"),
            Some(dt),
            &bind_body(&stub, "sid-d"),
        )
        .await,
        400,
        "M_INVALID_PARAM",
        "an identity server on loopback without [egress] allow",
    );
    assert!(stub.requests().is_empty(), "nothing reached the stub");
    assert_eq!(stub.bound_to("dave@example.org"), None);
}
