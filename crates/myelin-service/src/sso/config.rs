//! The `[sso]` section: OpenID Connect identity providers (`[[sso.oidc_providers]]`, as
//! Synapse's `oidc_providers`), the public address the providers send browsers back to, and the
//! clients trusted to receive a login token without a confirmation page.

use serde::{Deserialize, Serialize};

/// `[sso]`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SsoConfig {
    /// The base URL browsers reach this server at (`https://matrix.example.org`): the provider
    /// sends them back to `<public_baseurl>/_myelin/client/oidc/callback`. Unset, it is
    /// `well_known.client_base_url`, else `https://<server_name>`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub public_baseurl: Option<String>,
    /// Prefixes of client `redirectUrl`s that get the login token straight away; any other
    /// client is named on a confirmation page first (a link crafted by someone else would
    /// otherwise hand them the user's login).
    pub client_whitelist: Vec<String>,
    /// The identity providers; none configured, SSO login is off.
    pub oidc_providers: Vec<OidcProviderConfig>,
}

/// One OpenID Connect provider (authorization code flow with PKCE).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OidcProviderConfig {
    /// The identifier clients pass to `/login/sso/redirect/{idpId}`; also the name its users'
    /// identities are stored under (renaming it orphans them). `[A-Za-z0-9._~-]`, 1–255.
    pub idp_id: String,
    /// The name login pages show.
    pub idp_name: String,
    /// An `mxc://` icon for login pages.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub idp_icon: Option<String>,
    /// The provider's issuer; an ID token from any other issuer is refused.
    pub issuer: String,
    pub client_id: String,
    /// The client secret (not needed with `client_auth_method = "none"`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_secret: Option<String>,
    /// How the client authenticates at the token endpoint: `client_secret_basic` (the
    /// default), `client_secret_post` or `none`.
    #[serde(default = "default_client_auth_method")]
    pub client_auth_method: String,
    pub authorization_endpoint: String,
    pub token_endpoint: String,
    /// Where the claims are read; without it, from the ID token (then `openid` is required).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub userinfo_endpoint: Option<String>,
    #[serde(default = "default_scopes")]
    pub scopes: Vec<String>,
    /// The claim naming the user at the provider, stored as the external ID.
    #[serde(default = "default_subject_claim")]
    pub subject_claim: String,
    /// The claim a new account's localpart is made from (lower-cased; other characters
    /// escaped as Synapse does; a taken localpart gets a number appended).
    #[serde(default = "default_localpart_claim")]
    pub localpart_claim: String,
    /// The claim a new account's display name is taken from; unset, the localpart.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub display_name_claim: Option<String>,
}

fn default_client_auth_method() -> String {
    "client_secret_basic".to_owned()
}

fn default_scopes() -> Vec<String> {
    vec!["openid".to_owned(), "profile".to_owned()]
}

fn default_subject_claim() -> String {
    "sub".to_owned()
}

fn default_localpart_claim() -> String {
    "preferred_username".to_owned()
}

/// Whether `url` is an absolute `http(s)` URL.
fn is_http_url(url: &str) -> bool {
    reqwest::Url::parse(url)
        .is_ok_and(|u| matches!(u.scheme(), "http" | "https") && u.host_str().is_some())
}

impl SsoConfig {
    /// Whether SSO login is on (at least one provider).
    pub fn enabled(&self) -> bool {
        !self.oidc_providers.is_empty()
    }

    /// The configuration problems of the `[sso]` section.
    pub fn problems(&self) -> Vec<String> {
        let mut problems = Vec::new();
        if let Some(url) = &self.public_baseurl {
            if !is_http_url(url) {
                problems.push(format!(
                    "sso.public_baseurl {url:?} must be an http:// or https:// URL"
                ));
            }
        }
        if self.client_whitelist.iter().any(|p| p.is_empty()) {
            problems.push("sso.client_whitelist must not contain empty prefixes".to_owned());
        }
        for (i, provider) in self.oidc_providers.iter().enumerate() {
            let ids = &self.oidc_providers[..i];
            if ids.iter().any(|p| p.idp_id == provider.idp_id) {
                problems.push(format!(
                    "sso.oidc_providers: idp_id {:?} is used twice",
                    provider.idp_id
                ));
            }
            problems.extend(provider.problems());
        }
        problems
    }
}

impl OidcProviderConfig {
    pub(crate) fn problems(&self) -> Vec<String> {
        let name = format!("sso.oidc_providers[{:?}]", self.idp_id);
        let mut problems = Vec::new();
        let valid_id = self
            .idp_id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"._~-".contains(&b));
        if self.idp_id.is_empty() || self.idp_id.len() > 255 || !valid_id {
            problems.push(format!(
                "{name}: idp_id must be 1 to 255 characters of A-Z, a-z, 0-9, '.', '_', '~', '-'"
            ));
        }
        for (key, value) in [
            ("idp_name", &self.idp_name),
            ("issuer", &self.issuer),
            ("client_id", &self.client_id),
            ("subject_claim", &self.subject_claim),
            ("localpart_claim", &self.localpart_claim),
        ] {
            if value.trim().is_empty() {
                problems.push(format!("{name}: {key} must not be empty"));
            }
        }
        if let Some(icon) = &self.idp_icon {
            if !icon.starts_with("mxc://") {
                problems.push(format!("{name}: idp_icon {icon:?} must be an mxc:// URI"));
            }
        }
        let endpoints = [
            ("authorization_endpoint", Some(&self.authorization_endpoint)),
            ("token_endpoint", Some(&self.token_endpoint)),
            ("userinfo_endpoint", self.userinfo_endpoint.as_ref()),
        ];
        for (key, url) in endpoints {
            if let Some(url) = url.filter(|u| !is_http_url(u)) {
                problems.push(format!(
                    "{name}: {key} {url:?} must be an http:// or https:// URL"
                ));
            }
        }
        match self.client_auth_method.as_str() {
            "client_secret_basic" | "client_secret_post" => {
                if self.client_secret.as_deref().is_none_or(str::is_empty) {
                    problems.push(format!(
                        "{name}: client_secret is required with client_auth_method = {:?}",
                        self.client_auth_method
                    ));
                }
            }
            "none" => {}
            other => problems.push(format!(
                "{name}: client_auth_method {other:?} is unknown; use \"client_secret_basic\", \
                 \"client_secret_post\" or \"none\""
            )),
        }
        let openid = self.scopes.iter().any(|s| s == "openid");
        if !openid && self.userinfo_endpoint.is_none() {
            problems.push(format!(
                "{name}: without the openid scope there is no ID token; set userinfo_endpoint"
            ));
        }
        if self.scopes.iter().any(|s| s.is_empty() || s.contains(' ')) {
            problems.push(format!("{name}: scopes must be single non-empty words"));
        }
        problems
    }
}
