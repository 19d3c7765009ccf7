//! The SSO subsystem's own decisions: localparts made from claims, the authorization redirect,
//! the picker, the dance tied to its browser, subjects mapped to one account, ID-token checks,
//! the configuration's problems. The HTTP dance against a stub provider is in
//! `testing/tests/sso_login.rs`.

use serde_json::json;

use super::{
    config::OidcProviderConfig, mapping::localpart_from, oidc::Claims, CallbackParams, FailureKind,
    LoginStart, SsoConfig,
};
use crate::test_support::{harness_configured, Harness};
use crate::{FederationConfig, ServiceError};

fn provider(id: &str) -> OidcProviderConfig {
    OidcProviderConfig {
        idp_id: id.into(),
        idp_name: format!("{id} login"),
        idp_icon: None,
        issuer: "https://idp.example.org".into(),
        client_id: "myelin".into(),
        client_secret: Some("secret".into()),
        client_auth_method: "client_secret_basic".into(),
        authorization_endpoint: "https://idp.example.org/authorize".into(),
        // A private address: the egress filter refuses it before any connection.
        token_endpoint: "https://10.0.0.1/token".into(),
        userinfo_endpoint: Some("https://10.0.0.1/userinfo".into()),
        scopes: vec!["openid".into(), "profile".into()],
        subject_claim: "sub".into(),
        localpart_claim: "preferred_username".into(),
        display_name_claim: Some("name".into()),
    }
}

fn with_providers(ids: &[&str]) -> Harness {
    let providers = ids.iter().map(|id| provider(id)).collect();
    harness_configured(
        FederationConfig {
            enabled: false,
            ..FederationConfig::default()
        },
        |c| {
            c.sso = SsoConfig {
                public_baseurl: Some("https://matrix.test.local/".into()),
                client_whitelist: vec![],
                oidc_providers: providers,
            }
        },
    )
}

fn claims(value: serde_json::Value) -> Claims {
    match value {
        serde_json::Value::Object(map) => map,
        _ => unreachable!("an object"),
    }
}

#[test]
fn localparts_are_lowercased_and_escaped_as_synapse_does() {
    assert_eq!(localpart_from("Alice"), "alice");
    assert_eq!(localpart_from("jo smith"), "jo=20smith");
    assert_eq!(localpart_from("_admin"), "=5fadmin");
    assert_eq!(localpart_from("zoë"), "zo=c3=ab");
    assert_eq!(localpart_from("a.b-c/d+e=f"), "a.b-c/d+e=f");
}

#[tokio::test]
async fn the_redirect_carries_state_nonce_and_pkce_and_unknown_providers_are_not_found() {
    let h = with_providers(&["corp"]);
    let sso = &h.services.sso;
    let Ok(LoginStart::Provider { location, cookie }) =
        sso.start_login(None, "https://client.example/done")
    else {
        panic!("one provider: straight to it");
    };
    let url = reqwest::Url::parse(&location).unwrap();
    let q: std::collections::HashMap<_, _> = url.query_pairs().into_owned().collect();
    assert_eq!(url.path(), "/authorize");
    assert_eq!(q["response_type"], "code");
    assert_eq!(q["client_id"], "myelin");
    assert_eq!(
        q["redirect_uri"],
        "https://matrix.test.local/_myelin/client/oidc/callback"
    );
    assert_eq!(q["scope"], "openid profile");
    assert_eq!(q["code_challenge_method"], "S256");
    assert_eq!(q["code_challenge"].len(), 43);
    assert!(q["state"].len() >= 32 && q["nonce"].len() >= 43, "{q:?}");
    assert!(
        cookie.contains("HttpOnly") && cookie.contains("; Secure"),
        "{cookie}"
    );

    assert!(matches!(
        sso.start_login(Some("nope"), "https://client.example/done"),
        Err(ServiceError::NotFound(_))
    ));
    assert!(matches!(
        sso.start_login(None, "javascript:alert(1)"),
        Err(ServiceError::InvalidParam(_))
    ));
    assert!(matches!(
        sso.start_login(None, "not a url"),
        Err(ServiceError::InvalidParam(_))
    ));
}

#[tokio::test]
async fn several_providers_and_none_named_get_a_picker() {
    let h = with_providers(&["one", "two"]);
    let Ok(LoginStart::Picker { html }) = h
        .services
        .sso
        .start_login(None, "https://client.example/?a=<b>")
    else {
        panic!("a picker");
    };
    assert!(html.contains("/_matrix/client/v3/login/sso/redirect/one?redirectUrl="));
    assert!(html.contains("two login"));
    assert!(!html.contains("<b>"), "escaped: {html}");
}

#[tokio::test]
async fn a_callback_needs_the_state_and_cookie_of_its_browser() {
    let h = with_providers(&["corp"]);
    let sso = &h.services.sso;
    let Ok(LoginStart::Provider { location, cookie }) =
        sso.start_login(None, "https://client.example/done")
    else {
        panic!("redirect");
    };
    let state = reqwest::Url::parse(&location)
        .unwrap()
        .query_pairs()
        .find(|(k, _)| k == "state")
        .map(|(_, v)| v.into_owned())
        .unwrap();
    let secret = cookie
        .split(';')
        .next()
        .and_then(|c| c.split_once('='))
        .map(|(_, v)| v.to_owned())
        .unwrap();
    let params = |state: &str| CallbackParams {
        state: Some(state.into()),
        code: Some("code".into()),
        ..CallbackParams::default()
    };
    // Another browser's cookie, then an unknown state: refused, and the dance stays.
    let other = sso.finish_login(params(&state), Some("other")).await;
    assert_eq!(other.unwrap_err().kind, FailureKind::Session);
    let unknown = sso.finish_login(params("forged"), Some(&secret)).await;
    assert_eq!(unknown.unwrap_err().kind, FailureKind::Session);
    // The right pair goes on to the provider (refused here by the egress filter)...
    let reached = sso.finish_login(params(&state), Some(&secret)).await;
    assert_eq!(reached.unwrap_err().kind, FailureKind::Provider);
    // ...and used the dance up.
    let again = sso.finish_login(params(&state), Some(&secret)).await;
    assert_eq!(again.unwrap_err().kind, FailureKind::Session);
}

#[tokio::test]
async fn a_subject_maps_to_one_account_and_taken_localparts_get_a_number() {
    let h = with_providers(&["corp"]);
    let taken = h.user("alice").await;
    let sso = &h.services.sso;
    let corp = provider("corp");
    let first = claims(json!({ "sub": "s-1", "preferred_username": "Alice", "name": "Alice A." }));
    let user = sso.user_for_claims(&corp, &first).await.unwrap();
    assert_ne!(user, taken.user_id);
    assert_eq!(user.as_str(), "@alice1:test.local");
    let again = sso.user_for_claims(&corp, &first).await.unwrap();
    assert_eq!(again, user);
    let profile = h
        .services
        .ctx
        .storage
        .get_user(&user)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(profile.displayname.as_deref(), Some("Alice A."));
    assert!(profile.password_hash.is_none());

    let nameless = claims(json!({ "sub": "s-2" }));
    let err = sso.user_for_claims(&corp, &nameless).await.unwrap_err();
    assert_eq!(err.kind, FailureKind::Provider);
    let numeric = claims(json!({ "sub": "s-3", "preferred_username": "1234" }));
    let err = sso.user_for_claims(&corp, &numeric).await.unwrap_err();
    assert_eq!(err.kind, FailureKind::Mapping);
}

#[test]
fn the_configuration_names_each_problem() {
    let mut bad = provider("bad id");
    bad.idp_icon = Some("https://icon".into());
    bad.token_endpoint = "ftp://x".into();
    bad.client_secret = None;
    bad.scopes = vec!["profile".into()];
    bad.userinfo_endpoint = None;
    let config = SsoConfig {
        public_baseurl: None,
        client_whitelist: vec![],
        oidc_providers: vec![provider("corp"), provider("corp"), bad],
    };
    let problems = config.problems().join("\n");
    for expected in [
        "idp_id \"corp\" is used twice",
        "idp_id must be",
        "idp_icon",
        "token_endpoint",
        "client_secret is required",
        "set userinfo_endpoint",
    ] {
        assert!(problems.contains(expected), "{expected}: {problems}");
    }
    assert!(SsoConfig::default().problems().is_empty());
    assert!(provider("ok").problems().is_empty());
}
