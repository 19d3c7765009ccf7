//! SSO login through OpenID Connect (issue 17) against the provider stub on loopback (allowed
//! through `[egress]`): `/login` lists the provider; the redirect carries state, nonce and a PKCE
//! challenge; a callback with a forged state or without the browser's cookie is refused; the
//! code is exchanged and the login token logs in as the mapped user, the same one next time, a
//! new one (numbered) for another subject with the same name; a client not on the whitelist
//! gets a confirmation page; a provider on a private address is refused without an egress
//! allow; and the endpoints with SSO off answer as Synapse's.

use std::collections::HashMap;

use myelin_testing::http::{assert_err, errcode, C};
use myelin_testing::oidc::OidcStub;
use myelin_testing::{Config, TestServer};
use serde_json::{json, Value};

const PUBLIC: &str = "https://matrix.example.test";
const CLIENT: &str = "https://client.example/done?x=1";

/// A browser that shows each redirect instead of following it.
fn browser() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("client")
}

fn sso_config(stub: &OidcStub, allow_stub: bool, whitelist: bool) -> impl FnOnce(&mut Config) {
    let provider = stub.provider("stub");
    move |config: &mut Config| {
        config.sso.public_baseurl = Some(PUBLIC.into());
        config.sso.oidc_providers = vec![provider];
        if whitelist {
            config.sso.client_whitelist = vec!["https://client.example/".into()];
        }
        if allow_stub {
            config.egress.allow = vec!["127.0.0.1".into()];
        }
    }
}

fn location(response: &reqwest::Response) -> reqwest::Url {
    let value = response
        .headers()
        .get("location")
        .and_then(|v| v.to_str().ok())
        .expect("a Location header");
    reqwest::Url::parse(value).expect("an absolute Location")
}

fn query(url: &reqwest::Url) -> HashMap<String, String> {
    url.query_pairs().into_owned().collect()
}

/// The browser's way from the client's redirect to the provider and back: the callback URL the
/// provider sent it to (on our server, under `PUBLIC`) and the session cookie.
async fn to_provider_and_back(s: &TestServer, stub: &OidcStub) -> (reqwest::Url, String) {
    let b = browser();
    let start = b
        .get(format!(
            "{}{C}/login/sso/redirect/stub?redirectUrl={}",
            s.base_url(),
            myelin_testing::enc(CLIENT)
        ))
        .send()
        .await
        .expect("redirect");
    assert_eq!(start.status(), 302);
    let cookie = start
        .headers()
        .get("set-cookie")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .expect("a session cookie")
        .to_owned();
    let authorize = location(&start);
    assert!(
        authorize
            .as_str()
            .starts_with(&format!("{}/authorize?", stub.base)),
        "{authorize}"
    );
    let at_provider = b.get(authorize).send().await.expect("authorize");
    assert_eq!(at_provider.status(), 302);
    (location(&at_provider), cookie)
}

/// The callback URL on the test server itself (the provider named the public address).
async fn callback(
    s: &TestServer,
    back: &reqwest::Url,
    cookie: Option<&str>,
) -> (u16, Option<String>, String) {
    assert!(back
        .as_str()
        .starts_with(&format!("{PUBLIC}/_myelin/client/oidc/callback?")));
    let url = format!(
        "{}{}?{}",
        s.base_url(),
        back.path(),
        back.query().unwrap_or("")
    );
    let mut request = browser().get(url);
    if let Some(cookie) = cookie {
        request = request.header("cookie", cookie);
    }
    let response = request.send().await.expect("callback");
    let status = response.status().as_u16();
    let location = response
        .headers()
        .get("location")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    (status, location, response.text().await.unwrap_or_default())
}

fn with_state(back: &reqwest::Url, state: &str) -> reqwest::Url {
    let mut forged = back.clone();
    let pairs: Vec<(String, String)> = back
        .query_pairs()
        .into_owned()
        .map(|(k, v)| {
            if k == "state" {
                (k, state.to_owned())
            } else {
                (k, v)
            }
        })
        .collect();
    forged.query_pairs_mut().clear().extend_pairs(pairs);
    forged
}

/// The whole dance to a whitelisted client: the login token it is handed.
async fn sso_login_token(s: &TestServer, stub: &OidcStub) -> String {
    let (back, cookie) = to_provider_and_back(s, stub).await;
    let (status, location, body) = callback(s, &back, Some(&cookie)).await;
    assert_eq!(status, 302, "{body}");
    let target = reqwest::Url::parse(&location.expect("to the client")).expect("URL");
    assert!(target
        .as_str()
        .starts_with("https://client.example/done?x=1&loginToken="));
    query(&target)["loginToken"].clone()
}

async fn login_with_token(s: &TestServer, token: &str) -> (u16, Value) {
    let (status, body) = s
        .post(
            &format!("{C}/login"),
            None,
            &json!({ "type": "m.login.token", "token": token }),
        )
        .await;
    (status.as_u16(), body)
}

async fn whoami(s: &TestServer, body: &Value) -> String {
    let token = body["access_token"].as_str().expect("access token");
    let (_, me) = s.get(&format!("{C}/account/whoami"), Some(token)).await;
    me["user_id"].as_str().unwrap_or_default().to_owned()
}

#[tokio::test]
async fn the_sso_dance_logs_in_and_maps_the_subject_to_one_account() {
    let stub = OidcStub::start().await;
    let s = TestServer::start_with(sso_config(&stub, true, true)).await;

    let (_, flows) = s.get(&format!("{C}/login"), None).await;
    let flows = flows["flows"].as_array().cloned().unwrap_or_default();
    let sso = flows
        .iter()
        .find(|f| f["type"] == "m.login.sso")
        .expect("m.login.sso");
    assert_eq!(
        sso["identity_providers"],
        json!([{ "id": "stub", "name": "Stub stub", "icon": "mxc://example.org/icon" }])
    );
    assert!(flows.iter().any(|f| f["type"] == "m.login.token"));

    // The redirect: code flow, our callback, state, nonce, S256 challenge.
    stub.sign_in_as("sub-1", "Alice", "Alice Liddell");
    let (back, cookie) = to_provider_and_back(&s, &stub).await;
    let sent = stub
        .authorize_requests()
        .pop()
        .expect("an authorization request");
    assert_eq!(sent["response_type"], "code");
    assert_eq!(
        sent["redirect_uri"],
        format!("{PUBLIC}/_myelin/client/oidc/callback")
    );
    assert_eq!(sent["scope"], "openid profile");
    assert_eq!(sent["code_challenge_method"], "S256");
    assert_eq!(sent["code_challenge"].len(), 43);
    assert!(
        sent["state"].len() >= 32 && sent["nonce"].len() >= 43,
        "{sent:?}"
    );

    // A forged state, or the right one without the browser's cookie: refused, nothing exchanged.
    let (status, _, page) = callback(&s, &with_state(&back, "forged"), Some(&cookie)).await;
    assert_eq!(status, 400, "{page}");
    assert!(page.contains("unknown or has expired"), "{page}");
    let (status, _, _) = callback(&s, &back, None).await;
    assert_eq!(status, 400);
    let (status, _, _) = callback(&s, &back, Some("myelin_oidc_session=other")).await;
    assert_eq!(status, 400);
    assert_eq!(stub.token_exchanges(), 0);

    // The real callback: code exchanged, the client gets a login token for the mapped user.
    let (status, location, body) = callback(&s, &back, Some(&cookie)).await;
    assert_eq!(status, 302, "{body}");
    assert_eq!(stub.token_exchanges(), 1);
    let target = reqwest::Url::parse(&location.expect("location")).expect("URL");
    let token = query(&target)["loginToken"].clone();
    let (status, session) = login_with_token(&s, &token).await;
    assert_eq!(status, 200, "{session}");
    let alice = whoami(&s, &session).await;
    assert_eq!(alice, "@alice:localhost");
    let (_, profile) = s
        .get(&format!("{C}/profile/{alice}/displayname"), None)
        .await;
    assert_eq!(profile["displayname"], "Alice Liddell");
    // The token logs in once.
    let (status, again) = login_with_token(&s, &token).await;
    assert_eq!((status, errcode(&again)), (403, "M_FORBIDDEN"));
    // The used-up dance cannot be replayed either.
    let (status, _, _) = callback(&s, &back, Some(&cookie)).await;
    assert_eq!(status, 400);

    // The same subject next time: the same account.
    let token = sso_login_token(&s, &stub).await;
    let (_, session) = login_with_token(&s, &token).await;
    assert_eq!(whoami(&s, &session).await, "@alice:localhost");

    // Another subject with the same name: a new account, numbered.
    stub.sign_in_as("sub-2", "alice", "Another Alice");
    let token = sso_login_token(&s, &stub).await;
    let (_, session) = login_with_token(&s, &token).await;
    assert_eq!(whoami(&s, &session).await, "@alice1:localhost");
}

#[tokio::test]
async fn a_client_not_on_the_whitelist_is_named_on_a_confirmation_page() {
    let stub = OidcStub::start().await;
    let s = TestServer::start_with(sso_config(&stub, true, false)).await;
    stub.sign_in_as("sub-9", "bob", "Bob");
    let (back, cookie) = to_provider_and_back(&s, &stub).await;
    let (status, location, page) = callback(&s, &back, Some(&cookie)).await;
    assert_eq!((status, location), (200, None));
    assert!(page.contains("client.example"), "{page}");
    let start = page.find("href=\"").expect("a link") + 6;
    let href = &page[start..start + page[start..].find('"').expect("end of link")];
    let href = href.replace("&amp;", "&");
    assert!(
        href.starts_with("https://client.example/done?x=1&loginToken="),
        "{href}"
    );
    let token = query(&reqwest::Url::parse(&href).expect("URL"))["loginToken"].clone();
    let (status, session) = login_with_token(&s, &token).await;
    assert_eq!(status, 200, "{session}");
    assert_eq!(whoami(&s, &session).await, "@bob:localhost");
}

#[tokio::test]
async fn a_provider_on_a_private_address_is_refused_without_an_egress_allow() {
    let stub = OidcStub::start().await;
    let s = TestServer::start_with(sso_config(&stub, false, true)).await;
    stub.sign_in_as("sub-1", "mallory", "Mallory");
    let (back, cookie) = to_provider_and_back(&s, &stub).await;
    let (status, location, page) = callback(&s, &back, Some(&cookie)).await;
    assert_eq!((status, location), (502, None), "{page}");
    assert!(page.contains("not a public address"), "{page}");
    assert_eq!(stub.token_exchanges(), 0);
}

#[tokio::test]
async fn redirects_name_a_known_provider_and_a_safe_client() {
    let stub = OidcStub::start().await;
    let mut second = stub.provider("other");
    second.idp_name = "Other login".into();
    let base = sso_config(&stub, true, true);
    let s = TestServer::start_with(move |config| {
        base(config);
        config.sso.oidc_providers.push(second);
    })
    .await;
    let redirect = |rest: &str| format!("{C}/login/sso/redirect{rest}");
    let client = myelin_testing::enc(CLIENT);
    assert_err(
        &s.get(&redirect(&format!("/nope?redirectUrl={client}")), None)
            .await,
        404,
        "M_NOT_FOUND",
        "unknown provider",
    );
    assert_err(
        &s.get(&redirect("/stub?redirectUrl=javascript%3Aalert(1)"), None)
            .await,
        400,
        "M_INVALID_PARAM",
        "script URL",
    );
    assert_err(
        &s.get(&redirect("/stub"), None).await,
        400,
        "M_MISSING_PARAM",
        "no redirectUrl",
    );
    // Two providers and none named: a page to pick one.
    let page = browser()
        .get(format!(
            "{}{}",
            s.base_url(),
            redirect(&format!("?redirectUrl={client}"))
        ))
        .send()
        .await
        .expect("picker");
    assert_eq!(page.status(), 200);
    let html = page.text().await.unwrap_or_default();
    assert!(
        html.contains("/_matrix/client/v3/login/sso/redirect/stub?redirectUrl="),
        "{html}"
    );
    assert!(html.contains("Other login"), "{html}");
}

#[tokio::test]
async fn the_endpoints_answer_as_synapse_with_sso_off() {
    let s = TestServer::start().await;
    let (_, flows) = s.get(&format!("{C}/login"), None).await;
    let types: Vec<&str> = flows["flows"]
        .as_array()
        .map(|f| f.iter().filter_map(|f| f["type"].as_str()).collect())
        .unwrap_or_default();
    assert!(!types.contains(&"m.login.sso"), "{types:?}");
    let client = myelin_testing::enc(CLIENT);
    for path in [
        format!("{C}/login/sso/redirect?redirectUrl={client}"),
        format!("{C}/login/sso/redirect/any?redirectUrl={client}"),
        "/_myelin/client/oidc/callback?state=x&code=y".to_owned(),
    ] {
        assert_err(&s.get(&path, None).await, 400, "M_UNRECOGNIZED", &path);
    }
    assert_err(
        &s.get(&format!("{C}/login/sso/redirect"), None).await,
        400,
        "M_MISSING_PARAM",
        "no redirectUrl",
    );
}
