//! Random secrets and their stored hashes.

use base64::Engine;
use rand::RngCore;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

/// A random URL-safe secret with a recognisable prefix.
pub fn random_secret(prefix: &str) -> String {
    let mut bytes = [0u8; 24];
    rand::thread_rng().fill_bytes(&mut bytes);
    format!(
        "{prefix}{}",
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
    )
}

/// Random alphanumeric string (device IDs, session IDs).
pub fn random_alnum(len: usize) -> String {
    use rand::Rng;
    const CHARS: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ";
    let mut rng = rand::thread_rng();
    (0..len)
        .map(|_| CHARS[rng.gen_range(0..CHARS.len())] as char)
        .collect()
}

/// How a token is stored: SHA-256, hex.
pub fn hash_token(token: &str) -> String {
    Sha256::digest(token.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// Whether `given` equals `expected`, in time that depends on neither: both are hashed first
/// (so not even the length of `expected` leaks), then the digests compared in constant time.
/// For every secret compared directly rather than looked up by its hash.
pub fn secrets_equal(given: &str, expected: &str) -> bool {
    let given = Sha256::digest(given.as_bytes());
    let expected = Sha256::digest(expected.as_bytes());
    given.ct_eq(&expected).into()
}

/// Whether `given` is one of `secrets`, comparing with every one of them (no early exit).
pub fn is_one_of_secrets<'a>(given: &str, secrets: impl IntoIterator<Item = &'a String>) -> bool {
    secrets
        .into_iter()
        .fold(false, |found, s| found | secrets_equal(given, s))
}

/// Short-lived secrets kept in memory by their hash (OpenID and login tokens): a lookup never
/// compares the secret itself, so its timing says nothing about how close a guess came. At most
/// `max` are kept; expired ones go first, then the oldest.
pub(crate) struct ExpiringTokens<T> {
    tokens: std::sync::Mutex<std::collections::HashMap<String, (T, u64)>>,
    max: usize,
}

impl<T: Clone> ExpiringTokens<T> {
    pub(crate) fn new(max: usize) -> ExpiringTokens<T> {
        ExpiringTokens {
            tokens: std::sync::Mutex::new(std::collections::HashMap::new()),
            max,
        }
    }

    /// Keeps `token` for `value` until `expires_ms`.
    pub(crate) fn insert(&self, token: &str, value: T, expires_ms: u64, now_ms: u64) {
        let mut map = self.tokens.lock().unwrap_or_else(|p| p.into_inner());
        map.retain(|_, (_, expires)| *expires > now_ms);
        if map.len() >= self.max {
            if let Some(oldest) = map
                .iter()
                .min_by_key(|(_, (_, e))| *e)
                .map(|(t, _)| t.clone())
            {
                map.remove(&oldest);
            }
        }
        map.insert(hash_token(token), (value, expires_ms));
    }

    /// The value of a token still valid.
    pub(crate) fn get(&self, token: &str, now_ms: u64) -> Option<T> {
        let map = self.tokens.lock().unwrap_or_else(|p| p.into_inner());
        map.get(&hash_token(token))
            .filter(|(_, expires)| *expires > now_ms)
            .map(|(value, _)| value.clone())
    }

    /// The value of a token still valid, which is used up by this call.
    pub(crate) fn take(&self, token: &str, now_ms: u64) -> Option<T> {
        let mut map = self.tokens.lock().unwrap_or_else(|p| p.into_inner());
        map.remove(&hash_token(token))
            .filter(|(_, expires)| *expires > now_ms)
            .map(|(value, _)| value)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_compare_by_value() {
        assert!(secrets_equal("abc", "abc"));
        assert!(!secrets_equal("abc", "abd"));
        assert!(!secrets_equal("abc", "abcd"));
        assert!(!secrets_equal("", "a"));
        let tokens = vec!["one".to_owned(), "two".to_owned()];
        assert!(is_one_of_secrets("two", &tokens));
        assert!(!is_one_of_secrets("three", &tokens));
        assert!(!is_one_of_secrets("two", &Vec::new()));
    }
}
