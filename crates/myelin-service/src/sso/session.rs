//! The login dances under way: what `redirect` must remember until the provider sends the
//! browser back (the provider, the nonce, the PKCE verifier, where the client wants the login
//! token, and the secret of the browser's session cookie), by `state`.
//!
//! They live in memory, bounded and for ten minutes: a dance cut by a restart is simply started
//! again from the client, so durability would buy nothing.

use base64::Engine as _;
use rand::RngCore;
use sha2::{Digest, Sha256};

use crate::accounts::token::{secrets_equal, ExpiringTokens};

/// How long a browser has to come back from the provider.
pub const SESSION_LIFETIME_MS: u64 = 10 * 60 * 1000;
/// Dances kept at most; the oldest go first.
const MAX_SESSIONS: usize = 10_000;

/// One dance.
#[derive(Debug, Clone)]
pub(crate) struct PendingLogin {
    pub idp_id: String,
    pub nonce: String,
    pub code_verifier: String,
    pub client_redirect_url: String,
    /// The value of the session cookie set on the browser that started it.
    pub browser_secret: String,
}

/// The dances by `state`.
pub(crate) struct PendingLogins(ExpiringTokens<PendingLogin>);

impl Default for PendingLogins {
    fn default() -> Self {
        PendingLogins(ExpiringTokens::new(MAX_SESSIONS))
    }
}

impl PendingLogins {
    pub fn insert(&self, state: &str, login: PendingLogin, now: u64) {
        self.0.insert(state, login, now + SESSION_LIFETIME_MS, now);
    }

    /// The dance of `state`, used up by this call, if it is still valid and `cookie` is the
    /// secret of the browser that started it. A wrong cookie leaves it in place, so a request
    /// from another browser cannot cancel the user's login.
    pub fn take(&self, state: &str, cookie: &str, now: u64) -> Option<PendingLogin> {
        let login = self.0.get(state, now)?;
        if !secrets_equal(cookie, &login.browser_secret) {
            return None;
        }
        self.0.take(state, now)
    }
}

/// `bytes` random bytes, base64url without padding.
pub(crate) fn random_b64(bytes: usize) -> String {
    let mut buf = vec![0u8; bytes];
    rand::thread_rng().fill_bytes(&mut buf);
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(buf)
}

/// The PKCE `S256` challenge of `verifier` (RFC 7636 §4.2).
pub(crate) fn s256_challenge(verifier: &str) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(Sha256::digest(verifier.as_bytes()))
}
