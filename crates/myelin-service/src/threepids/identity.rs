//! The identity-server client (spec: Identity Service API v2): binding and unbinding addresses
//! for our users, looking addresses up (`hash_details` + `lookup`, the `sha256` algorithm) and
//! storing third-party invites. Every request goes through `ctx.egress`; an identity server is
//! reached over `https`, or plain `http` when `[egress]` lists its host (a self-hosted one).

use std::time::Duration;

use base64::Engine as _;
use myelin_federation::auth::{sign_request, RequestToSign};
use myelin_federation::ClientOptions;
use ruma::{CanonicalJsonValue, OwnedServerName, UserId};
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

use super::Threepids;
use crate::{ServiceError, ServiceResult};

/// How long one request to an identity server may take.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(20);
/// The largest answer read from an identity server.
const MAX_ANSWER_BYTES: usize = 64 * 1024;
/// The longest errcode or message passed on from an identity server.
const MAX_PASSED_ON: usize = 512;

/// An identity server named by a client (`id_server`: a host and optional port).
#[derive(Debug, Clone)]
pub struct IdServer {
    /// The name as the client gave it (what bindings remember).
    pub name: OwnedServerName,
    base: reqwest::Url,
}

/// What an identity server answered: its status and JSON body (`Null` when not JSON).
pub(crate) struct IsAnswer {
    pub status: u16,
    pub body: Value,
}

impl IsAnswer {
    /// The body of a 2xx answer; otherwise the identity server's error, passed on to the
    /// client as the spec asks ("simply proxy any errors").
    pub fn ok(self) -> ServiceResult<Value> {
        if (200..300).contains(&self.status) {
            return Ok(self.body);
        }
        let text = |field: &str| {
            self.body
                .get(field)
                .and_then(Value::as_str)
                .map(|s| s.chars().take(MAX_PASSED_ON).collect::<String>())
        };
        match text("errcode").filter(|c| is_errcode(c)) {
            Some(errcode) => Err(ServiceError::IdentityServer {
                status: self.status,
                errcode,
                error: text("error").unwrap_or_default(),
            }),
            None => Err(ServiceError::Remote(format!(
                "the identity server answered {}",
                self.status
            ))),
        }
    }
}

/// An errcode as the spec spells them (`M_…` or a namespaced upper-case one).
fn is_errcode(code: &str) -> bool {
    !code.is_empty()
        && code
            .bytes()
            .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit() || matches!(b, b'_' | b'.'))
}

impl Threepids {
    /// Parses `id_server` (`host[:port]`, no scheme or path) into where to reach it.
    pub fn id_server(&self, id_server: &str) -> ServiceResult<IdServer> {
        let invalid = || {
            ServiceError::InvalidParam(
                "id_server must be a host name with an optional port, without a scheme".into(),
            )
        };
        let name = OwnedServerName::try_from(id_server).map_err(|_| invalid())?;
        let policy = self.ctx.egress.policy();
        let scheme = if policy.allows_plain_http(name.host()) {
            "http"
        } else {
            "https"
        };
        let base = reqwest::Url::parse(&format!("{scheme}://{name}")).map_err(|_| invalid())?;
        self.ctx
            .egress
            .check_url(&base)
            .map_err(|e| ServiceError::InvalidParam(format!("id_server: {e}")))?;
        Ok(IdServer { name, base })
    }

    /// One request to an identity server under `/_matrix/identity/v2`: with the user's
    /// identity access token, or signed by this server (`X-Matrix`) when `signed`.
    pub(crate) async fn is_request(
        &self,
        server: &IdServer,
        method: reqwest::Method,
        path: &str,
        access_token: Option<&str>,
        signed: bool,
        body: Option<Value>,
    ) -> ServiceResult<IsAnswer> {
        let url = server
            .base
            .join(&format!("/_matrix/identity/v2{path}"))
            .map_err(|e| ServiceError::Internal(e.to_string()))?;
        self.ctx
            .egress
            .check_url(&url)
            .map_err(|e| ServiceError::Remote(e.to_string()))?;
        let mut request = self.client()?.request(method.clone(), url.clone());
        if let Some(token) = access_token {
            request = request.bearer_auth(token);
        }
        if signed {
            request = request.header(
                reqwest::header::AUTHORIZATION,
                self.x_matrix(server, &method, &url, body.as_ref())?,
            );
        }
        if let Some(body) = &body {
            request = request.json(body);
        }
        let mut response = request
            .send()
            .await
            .map_err(|e| ServiceError::Remote(format!("cannot reach the identity server: {e}")))?;
        let status = response.status().as_u16();
        let mut bytes = Vec::new();
        while let Some(chunk) = response
            .chunk()
            .await
            .map_err(|e| ServiceError::Remote(format!("reading the identity server: {e}")))?
        {
            if bytes.len() + chunk.len() > MAX_ANSWER_BYTES {
                return Err(ServiceError::Remote(
                    "the identity server's answer is too large".into(),
                ));
            }
            bytes.extend_from_slice(&chunk);
        }
        let body = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
        Ok(IsAnswer { status, body })
    }

    /// The `Authorization: X-Matrix` header of a request signed by this server, addressed to
    /// the identity server by its name.
    fn x_matrix(
        &self,
        server: &IdServer,
        method: &reqwest::Method,
        url: &reqwest::Url,
        body: Option<&Value>,
    ) -> ServiceResult<String> {
        let content = body
            .map(|b| CanonicalJsonValue::try_from(b.clone()))
            .transpose()
            .map_err(|e| ServiceError::Internal(e.to_string()))?;
        let uri = match url.query() {
            Some(q) => format!("{}?{q}", url.path()),
            None => url.path().to_owned(),
        };
        let header = sign_request(
            &RequestToSign {
                method: method.as_str(),
                uri: &uri,
                origin: self.ctx.server_name(),
                destination: &server.name,
                content: content.as_ref(),
            },
            &self.ctx.key.key_pair,
        )
        .map_err(|e| ServiceError::Internal(e.to_string()))?;
        Ok(header.to_string())
    }

    /// The client every identity-server request shares, built once through the egress filter.
    fn client(&self) -> ServiceResult<&reqwest::Client> {
        let options = ClientOptions {
            timeout: REQUEST_TIMEOUT,
            ..ClientOptions::default()
        };
        self.ctx
            .egress
            .shared_client(&self.client, &options)
            .map_err(|e| ServiceError::Internal(e.to_string()))
    }

    /// `POST /_matrix/identity/v2/3pid/bind` for `user_id`, then remembers the binding.
    pub async fn bind(
        &self,
        user_id: &UserId,
        id_server: &str,
        id_access_token: &str,
        sid: &str,
        client_secret: &str,
    ) -> ServiceResult<()> {
        let server = self.id_server(id_server)?;
        let body = json!({ "sid": sid, "client_secret": client_secret, "mxid": user_id });
        let answer = self
            .is_request(
                &server,
                reqwest::Method::POST,
                "/3pid/bind",
                Some(id_access_token),
                false,
                Some(body),
            )
            .await?
            .ok()?;
        let field = |name: &str| {
            answer
                .get(name)
                .and_then(Value::as_str)
                .filter(|s| !s.is_empty() && s.len() <= 512)
                .map(str::to_owned)
                .ok_or_else(|| {
                    ServiceError::Remote(format!("the identity server's bind has no {name}"))
                })
        };
        let (medium, address) = (field("medium")?, field("address")?);
        self.ctx
            .storage
            .add_threepid_id_server(user_id, &medium, &address, server.name.as_str())
            .await?;
        Ok(())
    }

    /// Unbinds the address from `id_server`, or from every identity server it was bound on
    /// through us. `true` when every one unbound it (`success`), `false` when none was known
    /// or one does not support unbinding (`no-support`).
    pub async fn unbind(
        &self,
        user_id: &UserId,
        medium: &str,
        address: &str,
        id_server: Option<&str>,
    ) -> ServiceResult<bool> {
        let servers = match id_server {
            Some(name) => vec![self.id_server(name)?],
            None => {
                let known = self
                    .ctx
                    .storage
                    .threepid_id_servers(user_id, medium, address)
                    .await?;
                let mut servers = Vec::with_capacity(known.len());
                for name in known {
                    match self.id_server(&name) {
                        Ok(server) => servers.push(server),
                        // No longer reachable under the current configuration.
                        Err(e) => tracing::warn!(id_server = %name, error = %e, "cannot unbind"),
                    }
                }
                servers
            }
        };
        if servers.is_empty() {
            return Ok(false);
        }
        let mut all = true;
        for server in servers {
            all &= self.unbind_from(user_id, medium, address, &server).await?;
        }
        Ok(all)
    }

    /// Unbinds every address `user_id` bound through us (deactivation): from `id_server`, or
    /// from the servers each was bound on. `true` when every one was unbound.
    pub async fn unbind_all(
        &self,
        user_id: &UserId,
        id_server: Option<&str>,
    ) -> ServiceResult<bool> {
        let mut all = true;
        for (medium, address) in self.ctx.storage.bound_threepids(user_id).await? {
            all &= self.unbind(user_id, &medium, &address, id_server).await?;
        }
        Ok(all)
    }

    /// One signed `POST /_matrix/identity/v2/3pid/unbind`. 400, 404 and 501 without a Matrix
    /// error mean the server does not support unbinding; other errors are passed on.
    async fn unbind_from(
        &self,
        user_id: &UserId,
        medium: &str,
        address: &str,
        server: &IdServer,
    ) -> ServiceResult<bool> {
        let body = json!({
            "mxid": user_id,
            "threepid": { "medium": medium, "address": address },
        });
        let answer = self
            .is_request(
                server,
                reqwest::Method::POST,
                "/3pid/unbind",
                None,
                true,
                Some(body),
            )
            .await?;
        let unsupported = matches!(answer.status, 400 | 404 | 501)
            && answer.body.get("errcode").and_then(Value::as_str).is_none();
        if !unsupported {
            answer.ok()?;
        }
        self.ctx
            .storage
            .remove_threepid_id_server(user_id, medium, address, server.name.as_str())
            .await?;
        Ok(!unsupported)
    }

    /// The Matrix user an address is bound to on `server` (`hash_details`, then `lookup` with
    /// the `sha256` algorithm).
    pub async fn lookup(
        &self,
        server: &IdServer,
        id_access_token: &str,
        medium: &str,
        address: &str,
    ) -> ServiceResult<Option<String>> {
        let details = self
            .is_request(
                server,
                reqwest::Method::GET,
                "/hash_details",
                Some(id_access_token),
                false,
                None,
            )
            .await?
            .ok()?;
        let pepper = details
            .get("lookup_pepper")
            .and_then(Value::as_str)
            .ok_or_else(|| ServiceError::Remote("the identity server gave no pepper".into()))?;
        let sha256 = details
            .get("algorithms")
            .and_then(Value::as_array)
            .is_some_and(|a| a.iter().any(|x| x.as_str() == Some("sha256")));
        if !sha256 {
            return Err(ServiceError::Remote(
                "the identity server does not offer sha256 lookups".into(),
            ));
        }
        let hashed = lookup_hash(address, medium, pepper);
        let body = json!({ "algorithm": "sha256", "pepper": pepper, "addresses": [hashed] });
        let answer = self
            .is_request(
                server,
                reqwest::Method::POST,
                "/lookup",
                Some(id_access_token),
                false,
                Some(body),
            )
            .await?
            .ok()?;
        Ok(answer
            .get("mappings")
            .and_then(|m| m.get(&hashed))
            .and_then(Value::as_str)
            .map(str::to_owned))
    }
}

/// The `sha256` lookup form of an address (spec: Identity Service API, "Client behaviour" of
/// hashed lookups): `"{address} {medium} {pepper}"` hashed, URL-safe unpadded base64.
pub fn lookup_hash(address: &str, medium: &str, pepper: &str) -> String {
    let digest = Sha256::digest(format!("{address} {medium} {pepper}").as_bytes());
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(digest)
}
