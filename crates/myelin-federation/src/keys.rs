//! Server signing keys on the wire: building our signed `/_matrix/key/v2/server` response and
//! checking the self-signature of a remote one (spec: Server-Server API, "Retrieving server keys").

use std::collections::BTreeMap;

use ruma::serde::{base64::Standard, Base64};
use ruma::signatures::{
    sign_json, to_canonical_json_string_for_signing, verify_canonical_json_bytes, Ed25519KeyPair,
    KeyPair,
};
use ruma::{
    CanonicalJsonObject, CanonicalJsonValue, OwnedServerName, ServerName, SigningKeyAlgorithm,
};
use serde::Deserialize;

/// The longest a fetched key is trusted without being fetched again, whatever its
/// `valid_until_ts` says: the spec caps it at 7 days for room versions 5 and later.
pub const MAX_KEY_VALIDITY_MS: u64 = 7 * 24 * 60 * 60 * 1000;

/// Why a key response was not accepted.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error("malformed key response: {0}")]
    Malformed(String),
    #[error("key response is for {found}, expected {expected}")]
    WrongServer { expected: String, found: String },
    #[error("key response has no ed25519 verify key")]
    NoVerifyKey,
    #[error("key response is not signed by {server} with {key_id}")]
    MissingSignature { server: String, key_id: String },
    #[error("bad signature by {server} with {key_id}")]
    BadSignature { server: String, key_id: String },
}

/// A key a server has since replaced, still good for checking what it signed before `expired_ts`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OldKey {
    /// Unpadded standard base64 of the public key.
    pub key: String,
    pub expired_ts: u64,
}

/// A verified `/_matrix/key/v2/server` response of one server.
#[derive(Debug, Clone)]
pub struct ServerKeys {
    pub server_name: OwnedServerName,
    /// Key ID (`ed25519:abc`) to unpadded base64 public key.
    pub verify_keys: BTreeMap<String, String>,
    pub old_verify_keys: BTreeMap<String, OldKey>,
    pub valid_until_ts: u64,
    /// The signed object as received (for serving it again as a notary).
    pub raw: CanonicalJsonObject,
}

#[derive(Deserialize)]
struct WireKeys {
    server_name: String,
    #[serde(default)]
    verify_keys: BTreeMap<String, WireKey>,
    #[serde(default)]
    old_verify_keys: BTreeMap<String, WireOldKey>,
    valid_until_ts: u64,
}

#[derive(Deserialize)]
struct WireKey {
    key: String,
}

#[derive(Deserialize)]
struct WireOldKey {
    key: String,
    expired_ts: u64,
}

/// Our key ID, `ed25519:<version>`.
pub fn key_id(key: &Ed25519KeyPair) -> String {
    format!("ed25519:{}", key.version())
}

/// Our public key in unpadded base64.
pub fn public_key_base64(key: &Ed25519KeyPair) -> String {
    Base64::<Standard, _>::new(key.public_key().to_vec()).encode()
}

/// Builds and signs our `/_matrix/key/v2/server` response.
///
/// `old_keys` are keys we used to sign with; they are published so old events stay verifiable.
pub fn own_server_keys(
    server_name: &ServerName,
    key: &Ed25519KeyPair,
    old_keys: &BTreeMap<String, OldKey>,
    valid_until_ts: u64,
) -> CanonicalJsonObject {
    let mut verify = CanonicalJsonObject::new();
    verify.insert(
        key_id(key),
        object([("key", CanonicalJsonValue::String(public_key_base64(key)))]),
    );
    let mut old = CanonicalJsonObject::new();
    for (id, old_key) in old_keys {
        old.insert(
            id.clone(),
            object([
                ("key", CanonicalJsonValue::String(old_key.key.clone())),
                ("expired_ts", int(old_key.expired_ts)),
            ]),
        );
    }
    let mut response = CanonicalJsonObject::new();
    response.insert(
        "server_name".into(),
        CanonicalJsonValue::String(server_name.to_string()),
    );
    response.insert("verify_keys".into(), CanonicalJsonValue::Object(verify));
    response.insert("old_verify_keys".into(), CanonicalJsonValue::Object(old));
    response.insert("valid_until_ts".into(), int(valid_until_ts));
    add_signature(&mut response, server_name, key);
    response
}

/// Adds our signature to a signed object (as a notary does to the key responses it relays).
pub fn add_signature(
    object: &mut CanonicalJsonObject,
    server_name: &ServerName,
    key: &Ed25519KeyPair,
) {
    // `sign_json` only fails on a `signatures` field that is not an object of objects; a response
    // that passed `verify_server_keys` (or one we built) never has one.
    if let Err(e) = sign_json(server_name.as_str(), key, object) {
        tracing::error!(error = %e, "cannot sign a key response");
    }
}

/// Checks a remote `/_matrix/key/v2/server` response: it is about `expected_server`, has at least
/// one ed25519 verify key and carries a valid self-signature by every one of them.
pub fn verify_server_keys(
    expected_server: &ServerName,
    raw: CanonicalJsonObject,
) -> Result<ServerKeys, KeyError> {
    let json = serde_json::to_value(&raw).map_err(|e| KeyError::Malformed(e.to_string()))?;
    let wire: WireKeys =
        serde_json::from_value(json).map_err(|e| KeyError::Malformed(e.to_string()))?;
    if wire.server_name != expected_server.as_str() {
        return Err(KeyError::WrongServer {
            expected: expected_server.to_string(),
            found: wire.server_name,
        });
    }
    let verify_keys: BTreeMap<String, String> = wire
        .verify_keys
        .into_iter()
        .filter(|(id, _)| id.starts_with("ed25519:"))
        .map(|(id, k)| (id, k.key))
        .collect();
    if verify_keys.is_empty() {
        return Err(KeyError::NoVerifyKey);
    }
    for (id, key) in &verify_keys {
        verify_signature(&raw, expected_server.as_str(), id, key)?;
    }
    let old_verify_keys = wire
        .old_verify_keys
        .into_iter()
        .map(|(id, k)| {
            (
                id,
                OldKey {
                    key: k.key,
                    expired_ts: k.expired_ts,
                },
            )
        })
        .collect();
    Ok(ServerKeys {
        server_name: expected_server.to_owned(),
        verify_keys,
        old_verify_keys,
        valid_until_ts: wire.valid_until_ts,
        raw,
    })
}

/// Checks that `object` carries a valid signature by `server` with the ed25519 key `key_id`, whose
/// public key is `public_key` (base64, padded or not).
pub fn verify_signature(
    object: &CanonicalJsonObject,
    server: &str,
    key_id: &str,
    public_key: &str,
) -> Result<(), KeyError> {
    let missing = || KeyError::MissingSignature {
        server: server.to_owned(),
        key_id: key_id.to_owned(),
    };
    let bad = || KeyError::BadSignature {
        server: server.to_owned(),
        key_id: key_id.to_owned(),
    };
    let Some(CanonicalJsonValue::Object(signatures)) = object.get("signatures") else {
        return Err(missing());
    };
    let Some(CanonicalJsonValue::Object(by_server)) = signatures.get(server) else {
        return Err(missing());
    };
    let Some(CanonicalJsonValue::String(signature)) = by_server.get(key_id) else {
        return Err(missing());
    };
    verify_bytes(object, key_id, public_key, signature).map_err(|()| bad())
}

/// Verifies `signature` (base64) over the canonical form of `object` without `signatures` and
/// `unsigned`.
pub(crate) fn verify_bytes(
    object: &CanonicalJsonObject,
    key_id: &str,
    public_key: &str,
    signature: &str,
) -> Result<(), ()> {
    if !key_id.starts_with("ed25519:") {
        return Err(());
    }
    let public_key = decode_base64(public_key).ok_or(())?;
    let signature = decode_base64(signature).ok_or(())?;
    let canonical = to_canonical_json_string_for_signing(object).map_err(|_| ())?;
    verify_canonical_json_bytes(
        &SigningKeyAlgorithm::Ed25519,
        &public_key,
        &signature,
        canonical.as_bytes(),
    )
    .map_err(|_| ())
}

/// Decodes standard base64, padded or not.
pub(crate) fn decode_base64(text: &str) -> Option<Vec<u8>> {
    Base64::<Standard, Vec<u8>>::parse(text.trim_end_matches('='))
        .ok()
        .map(Base64::into_inner)
}

/// Signs `object` and returns the signature as unpadded base64 (for the X-Matrix header).
pub(crate) fn sign_object(
    object: &CanonicalJsonObject,
    key: &Ed25519KeyPair,
) -> Result<String, ruma::signatures::JsonError> {
    let canonical = to_canonical_json_string_for_signing(object)?;
    Ok(key.sign(canonical.as_bytes()).base64())
}

fn object<const N: usize>(fields: [(&str, CanonicalJsonValue); N]) -> CanonicalJsonValue {
    CanonicalJsonValue::Object(fields.into_iter().map(|(k, v)| (k.to_owned(), v)).collect())
}

fn int(n: u64) -> CanonicalJsonValue {
    // Canonical JSON integers stop at 2^53; a timestamp saturates there rather than failing.
    CanonicalJsonValue::Integer(ruma::Int::try_from(n).unwrap_or(ruma::Int::MAX))
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    pub(crate) fn key_pair(version: &str) -> Ed25519KeyPair {
        let der = Ed25519KeyPair::generate();
        Ed25519KeyPair::from_der(&der, version.to_owned()).expect("generated key loads")
    }

    fn name(s: &str) -> OwnedServerName {
        s.try_into().expect("valid server name")
    }

    #[test]
    fn own_keys_verify() {
        let key = key_pair("a_1");
        let mut old = BTreeMap::new();
        old.insert(
            "ed25519:old".to_owned(),
            OldKey {
                key: "AAAA".into(),
                expired_ts: 5,
            },
        );
        let raw = own_server_keys(&name("a.example"), &key, &old, 1234);
        let keys = verify_server_keys(&name("a.example"), raw).expect("self-signed");
        assert_eq!(keys.valid_until_ts, 1234);
        assert_eq!(
            keys.verify_keys.get("ed25519:a_1"),
            Some(&public_key_base64(&key))
        );
        assert_eq!(keys.old_verify_keys["ed25519:old"].expired_ts, 5);
    }

    #[test]
    fn rejects_wrong_server_tampering_and_foreign_signature() {
        let key = key_pair("a_1");
        let raw = own_server_keys(&name("a.example"), &key, &BTreeMap::new(), 1234);
        assert!(matches!(
            verify_server_keys(&name("b.example"), raw.clone()),
            Err(KeyError::WrongServer { .. })
        ));

        let mut tampered = raw.clone();
        tampered.insert("valid_until_ts".into(), int(99_999));
        assert!(matches!(
            verify_server_keys(&name("a.example"), tampered),
            Err(KeyError::BadSignature { .. })
        ));

        // Signed by another key than the one it announces.
        let other = key_pair("a_1");
        let mut forged = raw.clone();
        forged.remove("signatures");
        add_signature(&mut forged, &name("a.example"), &other);
        assert!(matches!(
            verify_server_keys(&name("a.example"), forged),
            Err(KeyError::BadSignature { .. })
        ));

        let mut unsigned = raw;
        unsigned.remove("signatures");
        assert!(matches!(
            verify_server_keys(&name("a.example"), unsigned),
            Err(KeyError::MissingSignature { .. })
        ));
    }

    #[test]
    fn notary_signature_is_added_and_self_signature_survives() {
        let key = key_pair("a_1");
        let notary = key_pair("n_1");
        let mut raw = own_server_keys(&name("a.example"), &key, &BTreeMap::new(), 1234);
        add_signature(&mut raw, &name("notary.example"), &notary);
        verify_signature(
            &raw,
            "notary.example",
            "ed25519:n_1",
            &public_key_base64(&notary),
        )
        .expect("notary signed");
        verify_server_keys(&name("a.example"), raw).expect("still self-signed");
    }
}
