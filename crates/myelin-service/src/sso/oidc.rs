//! The back channel to an OpenID Connect provider: the authorization code exchanged at its
//! token endpoint (with the PKCE verifier), the claims read from its userinfo endpoint and the
//! ID token. Every request goes through `ctx.egress`, with a timeout and a size cap.
//!
//! The ID token's signature is not checked against the provider's JWKS: the token comes
//! straight from the token endpoint over the back channel we opened ourselves, which OpenID
//! Connect Core (§3.1.3.7, item 6) accepts in place of the signature. Its claims are still
//! checked: the issuer, our client ID in the audience, the nonce of this login, the expiry; and
//! the userinfo subject must be the ID token's (§5.3.2).

use std::time::Duration;

use base64::Engine as _;
use myelin_federation::ClientOptions;
use serde_json::{Map, Value};

use super::{config::OidcProviderConfig, Sso, SsoFailure};

/// The whole-request timeout of a call to the provider.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(20);
/// The largest answer read from the provider.
const MAX_ANSWER_BYTES: usize = 64 * 1024;

/// The claims of a login: from the userinfo endpoint, or the ID token.
pub(crate) type Claims = Map<String, Value>;

/// What the token endpoint answered.
struct Tokens {
    access_token: String,
    id_token: Option<Claims>,
}

impl Sso {
    /// The claims of the user the provider authenticated with `code`.
    pub(crate) async fn claims_for_code(
        &self,
        provider: &OidcProviderConfig,
        code: &str,
        code_verifier: &str,
        nonce: &str,
    ) -> Result<Claims, SsoFailure> {
        let tokens = self.exchange_code(provider, code, code_verifier).await?;
        let wants_id_token = provider.scopes.iter().any(|s| s == "openid");
        if let Some(id) = &tokens.id_token {
            self.check_id_token(provider, id, nonce)?;
        } else if wants_id_token {
            return Err(SsoFailure::provider(
                "the token endpoint returned no id_token",
            ));
        }
        let Some(userinfo) = &provider.userinfo_endpoint else {
            return tokens
                .id_token
                .ok_or_else(|| SsoFailure::provider("no ID token and no userinfo endpoint"));
        };
        let claims = self.userinfo(userinfo, &tokens.access_token).await?;
        if let Some(id) = &tokens.id_token {
            if claims.get("sub").is_some() && claims.get("sub") != id.get("sub") {
                return Err(SsoFailure::provider(
                    "the userinfo subject is not the ID token's",
                ));
            }
        }
        Ok(claims)
    }

    /// `POST token_endpoint` with `grant_type=authorization_code`.
    async fn exchange_code(
        &self,
        provider: &OidcProviderConfig,
        code: &str,
        code_verifier: &str,
    ) -> Result<Tokens, SsoFailure> {
        let url = self.provider_url(&provider.token_endpoint)?;
        let redirect_uri = self.callback_url();
        let mut form = vec![
            ("grant_type", "authorization_code"),
            ("code", code),
            ("redirect_uri", redirect_uri.as_str()),
            ("code_verifier", code_verifier),
        ];
        let secret = provider.client_secret.as_deref().unwrap_or_default();
        let mut request = self.http()?.post(url);
        match provider.client_auth_method.as_str() {
            "client_secret_basic" => {
                // RFC 6749 §2.3.1: both parts form-urlencoded before the Basic encoding.
                let basic = format!(
                    "{}:{}",
                    form_encode(&provider.client_id),
                    form_encode(secret)
                );
                let header = base64::engine::general_purpose::STANDARD.encode(basic);
                request = request.header(reqwest::header::AUTHORIZATION, format!("Basic {header}"));
            }
            "client_secret_post" => {
                form.push(("client_id", provider.client_id.as_str()));
                form.push(("client_secret", secret));
            }
            _ => form.push(("client_id", provider.client_id.as_str())),
        }
        let answer = self
            .read_json(request.form(&form), "token endpoint")
            .await?;
        let access_token = answer
            .get("access_token")
            .and_then(Value::as_str)
            .ok_or_else(|| SsoFailure::provider("the token endpoint returned no access_token"))?
            .to_owned();
        let id_token = match answer.get("id_token").and_then(Value::as_str) {
            Some(jwt) => Some(decode_jwt_claims(jwt)?),
            None => None,
        };
        Ok(Tokens {
            access_token,
            id_token,
        })
    }

    /// `GET userinfo_endpoint` with the access token.
    async fn userinfo(&self, endpoint: &str, access_token: &str) -> Result<Claims, SsoFailure> {
        let url = self.provider_url(endpoint)?;
        let request = self.http()?.get(url).bearer_auth(access_token);
        match self.read_json(request, "userinfo endpoint").await? {
            Value::Object(claims) => Ok(claims),
            _ => Err(SsoFailure::provider("the userinfo answer is not an object")),
        }
    }

    /// The ID token was meant for this login: issuer, audience, nonce, expiry.
    fn check_id_token(
        &self,
        provider: &OidcProviderConfig,
        claims: &Claims,
        nonce: &str,
    ) -> Result<(), SsoFailure> {
        if claims.get("iss").and_then(Value::as_str) != Some(provider.issuer.as_str()) {
            return Err(SsoFailure::provider(
                "the ID token's issuer is not the provider",
            ));
        }
        let ours = |v: &Value| v.as_str() == Some(provider.client_id.as_str());
        let audience_ok = match claims.get("aud") {
            Some(Value::Array(list)) => list.iter().any(ours),
            Some(one) => ours(one),
            None => false,
        };
        if !audience_ok {
            return Err(SsoFailure::provider(
                "the ID token is not meant for this server",
            ));
        }
        if claims.get("nonce").and_then(Value::as_str) != Some(nonce) {
            return Err(SsoFailure::provider(
                "the ID token's nonce is not this login's",
            ));
        }
        let now_s = self.ctx.now_ms() / 1000;
        match claims.get("exp").and_then(Value::as_u64) {
            Some(exp) if exp > now_s => Ok(()),
            _ => Err(SsoFailure::provider("the ID token has expired")),
        }
    }

    /// A configured endpoint, checked by the egress filter.
    fn provider_url(&self, endpoint: &str) -> Result<reqwest::Url, SsoFailure> {
        let url = reqwest::Url::parse(endpoint)
            .map_err(|e| SsoFailure::provider(format!("bad endpoint {endpoint}: {e}")))?;
        self.ctx
            .egress
            .check_url(&url)
            .map_err(|e| SsoFailure::provider(e.to_string()))?;
        Ok(url)
    }

    /// Sends `request` and reads a JSON answer of at most [`MAX_ANSWER_BYTES`], refusing
    /// error statuses.
    async fn read_json(
        &self,
        request: reqwest::RequestBuilder,
        what: &str,
    ) -> Result<Value, SsoFailure> {
        let mut response = request
            .header(reqwest::header::ACCEPT, "application/json")
            .send()
            .await
            .map_err(|e| SsoFailure::provider(format!("cannot reach the {what}: {e}")))?;
        let status = response.status();
        let mut bytes = Vec::new();
        while let Some(chunk) = response
            .chunk()
            .await
            .map_err(|e| SsoFailure::provider(format!("reading the {what}: {e}")))?
        {
            if bytes.len() + chunk.len() > MAX_ANSWER_BYTES {
                return Err(SsoFailure::provider(format!(
                    "the {what}'s answer is too large"
                )));
            }
            bytes.extend_from_slice(&chunk);
        }
        if !status.is_success() {
            return Err(SsoFailure::provider(format!(
                "the {what} answered {status}"
            )));
        }
        serde_json::from_slice(&bytes)
            .map_err(|e| SsoFailure::provider(format!("the {what}'s answer is not JSON: {e}")))
    }

    /// The client every provider request shares, built once through the egress filter.
    fn http(&self) -> Result<&reqwest::Client, SsoFailure> {
        let options = ClientOptions {
            timeout: REQUEST_TIMEOUT,
            ..ClientOptions::default()
        };
        self.ctx
            .egress
            .shared_client(&self.client, &options)
            .map_err(|e| SsoFailure::internal(e.to_string()))
    }
}

/// `application/x-www-form-urlencoded` encoding of one value (the WHATWG byte set).
fn form_encode(value: &str) -> String {
    value
        .bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'*' | b'-' | b'.' | b'_' => {
                (b as char).to_string()
            }
            b' ' => "+".to_owned(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// The payload of a compact JWT, without checking its signature (see the module comment).
pub(crate) fn decode_jwt_claims(jwt: &str) -> Result<Claims, SsoFailure> {
    let bad = || SsoFailure::provider("the ID token is not a JWT");
    let mut parts = jwt.split('.');
    let (Some(_header), Some(payload), Some(_signature), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(bad());
    };
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(payload.trim_end_matches('='))
        .map_err(|_| bad())?;
    match serde_json::from_slice(&bytes) {
        Ok(Value::Object(claims)) => Ok(claims),
        _ => Err(bad()),
    }
}
