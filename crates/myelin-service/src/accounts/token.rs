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
