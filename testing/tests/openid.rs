//! OpenID: a client asks for a token for itself, and a third party learns from the server's
//! `/openid/userinfo` which user the token belongs to.

use myelin_testing::{enc, StatusCode, TestServer};
use serde_json::json;

#[tokio::test]
async fn openid_tokens_identify_their_user() {
    let server = TestServer::start_federating().await;
    let alice = server.register("alice", "correct horse battery").await;
    let bob = server.register("bob", "correct horse battery").await;

    let path = format!(
        "/_matrix/client/v3/user/{}/openid/request_token",
        enc(&alice.user_id)
    );
    let (status, token) = server.post(&path, alice.token(), &json!({})).await;
    assert_eq!(status, StatusCode::OK, "{token}");
    assert_eq!(token["token_type"], "Bearer");
    assert_eq!(token["matrix_server_name"], server.server_name());
    assert!(
        token["expires_in"].as_u64().is_some_and(|s| s > 0),
        "{token}"
    );
    let access = token["access_token"].as_str().expect("access_token");

    // Nobody may ask for someone else's token.
    let (status, body) = server.post(&path, bob.token(), &json!({})).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
    assert_eq!(body["errcode"], "M_FORBIDDEN");

    // The third party's question needs no X-Matrix signature, only the token.
    let (status, info) = server
        .get(
            &format!(
                "/_matrix/federation/v1/openid/userinfo?access_token={}",
                enc(access)
            ),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{info}");
    assert_eq!(info["sub"], alice.user_id.as_str());

    let (status, body) = server
        .get(
            "/_matrix/federation/v1/openid/userinfo?access_token=forged",
            None,
        )
        .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{body}");
    assert_eq!(body["errcode"], "M_UNKNOWN_TOKEN");
    let (status, body) = server
        .get("/_matrix/federation/v1/openid/userinfo", None)
        .await;
    assert_eq!(
        status,
        StatusCode::BAD_REQUEST,
        "a missing token is a bad request: {body}"
    );
}
