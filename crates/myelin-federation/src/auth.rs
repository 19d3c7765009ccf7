//! Request authentication between servers: the `X-Matrix` Authorization scheme (spec:
//! Server-Server API, "Request Authentication").
//!
//! The signed object is `{method, uri, origin, destination, content?}`; its signature travels as
//! `Authorization: X-Matrix origin="..",destination="..",key="..",sig=".."`. Signing and checking
//! against a known public key are pure; fetching the key is the keyring's job.

use ruma::signatures::Ed25519KeyPair;
use ruma::{CanonicalJsonObject, CanonicalJsonValue, OwnedServerName, ServerName};

use crate::keys;

/// Why an incoming request was not authenticated.
#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    #[error("missing X-Matrix Authorization header")]
    Missing,
    #[error("malformed X-Matrix Authorization header: {0}")]
    Malformed(String),
    #[error("the request is addressed to {found}, not to this server")]
    WrongDestination { found: String },
    #[error("cannot get key {key_id} of {origin}: {reason}")]
    UnknownKey {
        origin: String,
        key_id: String,
        reason: String,
    },
    #[error("invalid request signature by {origin} with {key_id}")]
    BadSignature { origin: String, key_id: String },
    #[error("the request body is not canonical JSON: {0}")]
    BadContent(String),
    #[error("cannot sign the request: {0}")]
    Signing(String),
}

/// The parameters of an `X-Matrix` Authorization header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct XMatrix {
    pub origin: OwnedServerName,
    /// Absent only in requests from servers older than spec v1.3.
    pub destination: Option<OwnedServerName>,
    /// The key ID, `ed25519:<version>`.
    pub key: String,
    /// The unpadded base64 signature.
    pub sig: String,
}

impl XMatrix {
    /// Parses an Authorization header value (`X-Matrix k="v",...`).
    ///
    /// Parameter values may be quoted strings (with `\` escapes) or bare tokens; unknown
    /// parameters are ignored, repeated ones are an error.
    pub fn parse(header: &str) -> Result<XMatrix, AuthError> {
        let malformed = |m: &str| AuthError::Malformed(m.to_owned());
        let header = header.trim();
        let (scheme, params) = header
            .split_once([' ', '\t'])
            .ok_or_else(|| malformed("no parameters"))?;
        if !scheme.eq_ignore_ascii_case("X-Matrix") {
            return Err(AuthError::Missing);
        }
        let (mut origin, mut destination, mut key, mut sig) = (None, None, None, None);
        for (name, value) in parse_params(params)? {
            let slot = match name.to_ascii_lowercase().as_str() {
                "origin" => &mut origin,
                "destination" => &mut destination,
                "key" => &mut key,
                "sig" => &mut sig,
                _ => continue,
            };
            if slot.replace(value).is_some() {
                return Err(AuthError::Malformed(format!("parameter {name} repeated")));
            }
        }
        let server = |what: &str, v: String| {
            OwnedServerName::try_from(v)
                .map_err(|_| AuthError::Malformed(format!("{what} is not a valid server name")))
        };
        let origin = server("origin", origin.ok_or_else(|| malformed("no origin"))?)?;
        let destination = destination.map(|d| server("destination", d)).transpose()?;
        let key = key.ok_or_else(|| malformed("no key"))?;
        let sig = sig.ok_or_else(|| malformed("no sig"))?;
        if !key.contains(':') {
            return Err(malformed("key is not an algorithm:version key ID"));
        }
        Ok(XMatrix {
            origin,
            destination,
            key,
            sig,
        })
    }
}

impl std::fmt::Display for XMatrix {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "X-Matrix origin={}", quote(self.origin.as_str()))?;
        if let Some(destination) = &self.destination {
            write!(f, ",destination={}", quote(destination.as_str()))?;
        }
        write!(f, ",key={},sig={}", quote(&self.key), quote(&self.sig))
    }
}

/// The request as the origin signed it.
#[derive(Debug, Clone, Copy)]
pub struct RequestToSign<'a> {
    /// Upper-case HTTP method.
    pub method: &'a str,
    /// The path and query string exactly as sent (`/_matrix/federation/v1/...?a=b`).
    pub uri: &'a str,
    pub origin: &'a ServerName,
    pub destination: &'a ServerName,
    /// The JSON body, if the request has one.
    pub content: Option<&'a CanonicalJsonValue>,
}

impl RequestToSign<'_> {
    fn object(&self) -> CanonicalJsonObject {
        let mut object = CanonicalJsonObject::new();
        object.insert(
            "method".into(),
            CanonicalJsonValue::String(self.method.to_owned()),
        );
        object.insert(
            "uri".into(),
            CanonicalJsonValue::String(self.uri.to_owned()),
        );
        object.insert(
            "origin".into(),
            CanonicalJsonValue::String(self.origin.to_string()),
        );
        object.insert(
            "destination".into(),
            CanonicalJsonValue::String(self.destination.to_string()),
        );
        if let Some(content) = self.content {
            object.insert("content".into(), content.clone());
        }
        object
    }
}

/// Signs an outgoing request with our key and returns its Authorization header.
pub fn sign_request(
    request: &RequestToSign<'_>,
    key: &Ed25519KeyPair,
) -> Result<XMatrix, AuthError> {
    let sig =
        keys::sign_object(&request.object(), key).map_err(|e| AuthError::Signing(e.to_string()))?;
    Ok(XMatrix {
        origin: request.origin.to_owned(),
        destination: Some(request.destination.to_owned()),
        key: keys::key_id(key),
        sig,
    })
}

/// Checks the header's addressing before any key is fetched: a `destination` that is not
/// `our_name` is refused.
pub fn check_destination(header: &XMatrix, our_name: &ServerName) -> Result<(), AuthError> {
    match &header.destination {
        Some(d) if d != our_name => Err(AuthError::WrongDestination {
            found: d.to_string(),
        }),
        _ => Ok(()),
    }
}

/// Checks an incoming request's signature against the origin's public key (base64).
///
/// `method`, `uri` and `content` are what we received; `our_name` is the destination the origin
/// must have signed for.
pub fn verify_request(
    header: &XMatrix,
    method: &str,
    uri: &str,
    our_name: &ServerName,
    content: Option<&CanonicalJsonValue>,
    public_key: &str,
) -> Result<(), AuthError> {
    check_destination(header, our_name)?;
    let request = RequestToSign {
        method,
        uri,
        origin: &header.origin,
        destination: our_name,
        content,
    };
    keys::verify_bytes(&request.object(), &header.key, public_key, &header.sig).map_err(|()| {
        AuthError::BadSignature {
            origin: header.origin.to_string(),
            key_id: header.key.clone(),
        }
    })
}

/// Splits `a="x", b=y` into name/value pairs.
fn parse_params(input: &str) -> Result<Vec<(String, String)>, AuthError> {
    let malformed = |m: String| AuthError::Malformed(m);
    let mut params = Vec::new();
    let mut chars = input.chars().peekable();
    loop {
        while chars
            .peek()
            .is_some_and(|c| c.is_ascii_whitespace() || *c == ',')
        {
            chars.next();
        }
        if chars.peek().is_none() {
            return Ok(params);
        }
        let mut name = String::new();
        while let Some(&c) = chars.peek() {
            if is_token_char(c) {
                name.push(c);
                chars.next();
            } else {
                break;
            }
        }
        while chars.peek().is_some_and(|c| c.is_ascii_whitespace()) {
            chars.next();
        }
        if name.is_empty() || chars.next() != Some('=') {
            return Err(malformed(format!("expected name=value near {name:?}")));
        }
        while chars.peek().is_some_and(|c| c.is_ascii_whitespace()) {
            chars.next();
        }
        let mut value = String::new();
        if chars.peek() == Some(&'"') {
            chars.next();
            loop {
                match chars.next() {
                    Some('"') => break,
                    Some('\\') => match chars.next() {
                        Some(c) => value.push(c),
                        None => return Err(malformed(format!("unterminated value of {name}"))),
                    },
                    Some(c) => value.push(c),
                    None => return Err(malformed(format!("unterminated value of {name}"))),
                }
            }
        } else {
            while let Some(&c) = chars.peek() {
                if is_token_char(c) || c == '/' || c == '=' {
                    value.push(c);
                    chars.next();
                } else {
                    break;
                }
            }
        }
        while chars.peek().is_some_and(|c| c.is_ascii_whitespace()) {
            chars.next();
        }
        match chars.peek() {
            None | Some(',') => params.push((name, value)),
            Some(c) => return Err(malformed(format!("unexpected {c:?} after {name}"))),
        }
    }
}

/// RFC 9110 `tchar` (plus `:`, `[` and `]`, which servers send unquoted in names and key IDs).
fn is_token_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || "!#$%&'*+-.^_`|~:[]".contains(c)
}

fn quote(value: &str) -> String {
    let mut out = String::with_capacity(value.len() + 2);
    out.push('"');
    for c in value.chars() {
        if c == '"' || c == '\\' {
            out.push('\\');
        }
        out.push(c);
    }
    out.push('"');
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::keys::{public_key_base64, tests::key_pair};

    fn name(s: &str) -> OwnedServerName {
        s.try_into().expect("valid server name")
    }

    struct Case {
        key: Ed25519KeyPair,
        content: CanonicalJsonValue,
        header: XMatrix,
    }

    fn signed() -> Case {
        let key = key_pair("k1");
        let content: CanonicalJsonValue =
            serde_json::from_str(r#"{"pdus":[],"n":1}"#).expect("canonical json");
        let request = RequestToSign {
            method: "PUT",
            uri: "/_matrix/federation/v1/send/t1?x=%20y",
            origin: &name("origin.example"),
            destination: &name("dest.example:8448"),
            content: Some(&content),
        };
        let header = sign_request(&request, &key).expect("signs");
        Case {
            key,
            content,
            header,
        }
    }

    fn check(
        case: &Case,
        header: &XMatrix,
        uri: &str,
        dest: &str,
        content: Option<&CanonicalJsonValue>,
    ) -> Result<(), AuthError> {
        verify_request(
            header,
            "PUT",
            uri,
            &name(dest),
            content,
            &public_key_base64(&case.key),
        )
    }

    const URI: &str = "/_matrix/federation/v1/send/t1?x=%20y";

    #[test]
    fn round_trip_through_the_header_text() {
        let case = signed();
        let text = case.header.to_string();
        assert!(
            text.starts_with(
                "X-Matrix origin=\"origin.example\",destination=\"dest.example:8448\",key=\"ed25519:k1\",sig=\""
            ),
            "{text}"
        );
        let parsed = XMatrix::parse(&text).expect("parses");
        assert_eq!(parsed, case.header);
        check(
            &case,
            &parsed,
            URI,
            "dest.example:8448",
            Some(&case.content),
        )
        .expect("verifies");
    }

    #[test]
    fn tampered_requests_fail() {
        let case = signed();
        let other: CanonicalJsonValue = serde_json::from_str(r#"{"pdus":[],"n":2}"#).expect("json");
        assert!(matches!(
            check(&case, &case.header, URI, "dest.example:8448", Some(&other)),
            Err(AuthError::BadSignature { .. })
        ));
        assert!(matches!(
            check(&case, &case.header, URI, "dest.example:8448", None),
            Err(AuthError::BadSignature { .. })
        ));
        assert!(matches!(
            check(
                &case,
                &case.header,
                "/_matrix/federation/v1/send/t2",
                "dest.example:8448",
                Some(&case.content)
            ),
            Err(AuthError::BadSignature { .. })
        ));
        assert!(matches!(
            verify_request(
                &case.header,
                "POST",
                URI,
                &name("dest.example:8448"),
                Some(&case.content),
                &public_key_base64(&case.key)
            ),
            Err(AuthError::BadSignature { .. })
        ));
        let mut spoofed = case.header.clone();
        spoofed.origin = name("evil.example");
        assert!(matches!(
            check(
                &case,
                &spoofed,
                URI,
                "dest.example:8448",
                Some(&case.content)
            ),
            Err(AuthError::BadSignature { .. })
        ));
    }

    #[test]
    fn wrong_destination_fails() {
        let case = signed();
        assert!(matches!(
            check(
                &case,
                &case.header,
                URI,
                "dest.example",
                Some(&case.content)
            ),
            Err(AuthError::WrongDestination { .. })
        ));
        // Without a destination parameter the signature (made for dest.example:8448) still binds it.
        let mut no_dest = case.header.clone();
        no_dest.destination = None;
        assert!(matches!(
            check(&case, &no_dest, URI, "other.example", Some(&case.content)),
            Err(AuthError::BadSignature { .. })
        ));
        check(
            &case,
            &no_dest,
            URI,
            "dest.example:8448",
            Some(&case.content),
        )
        .expect("old servers omit destination");
    }

    #[test]
    fn wrong_key_fails() {
        let case = signed();
        let stranger = key_pair("k1");
        assert!(matches!(
            verify_request(
                &case.header,
                "PUT",
                URI,
                &name("dest.example:8448"),
                Some(&case.content),
                &public_key_base64(&stranger)
            ),
            Err(AuthError::BadSignature { .. })
        ));
    }

    #[test]
    fn header_parsing() {
        let h = XMatrix::parse("X-Matrix origin=origin.example,key=\"ed25519:a\",sig=\"ABC/+d\"")
            .expect("token origin, no destination");
        assert_eq!(h.origin.as_str(), "origin.example");
        assert_eq!(h.destination, None);
        assert_eq!(h.sig, "ABC/+d");
        let h = XMatrix::parse("x-matrix  origin=\"[::1]:8448\" , destination=\"d.example\", key=\"ed25519:a\", sig=\"s\", extra=\"a\\\"b\"")
            .expect("spaces, IPv6, unknown parameter with an escape");
        assert_eq!(h.origin.as_str(), "[::1]:8448");
        assert_eq!(
            h.destination.as_ref().map(|d| d.as_str()),
            Some("d.example")
        );

        assert!(matches!(
            XMatrix::parse("Bearer abc"),
            Err(AuthError::Missing)
        ));
        for bad in [
            "X-Matrix",
            "X-Matrix key=\"ed25519:a\",sig=\"s\"",
            "X-Matrix origin=\"o.example\",sig=\"s\"",
            "X-Matrix origin=\"o.example\",key=\"ed25519:a\"",
            "X-Matrix origin=\"o.example\",origin=\"p.example\",key=\"ed25519:a\",sig=\"s\"",
            "X-Matrix origin=\"not a name\",key=\"ed25519:a\",sig=\"s\"",
            "X-Matrix origin=\"o.example,key=\"ed25519:a\",sig=\"s\"",
            "X-Matrix origin=\"o.example\" key=\"ed25519:a\",sig=\"s\"",
            "X-Matrix origin=\"o.example\",key=\"nocolon\",sig=\"s\"",
        ] {
            assert!(
                matches!(XMatrix::parse(bad), Err(AuthError::Malformed(_))),
                "{bad}"
            );
        }
    }
}
