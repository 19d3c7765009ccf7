//! Building the paths of outgoing federation requests: every identifier put in a path is
//! percent-encoded here, in one place.

/// `segment` percent-encoded for one path segment (or query value): everything but the
/// unreserved characters of RFC 3986, so `!`, `$`, `@`, `:`, `#` and `/` in Matrix identifiers
/// never change the path's shape.
pub fn encode_segment(segment: &str) -> String {
    let mut out = String::with_capacity(segment.len());
    for b in segment.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                out.push(b as char)
            }
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::encode_segment;

    #[test]
    fn identifiers_become_one_segment() {
        assert_eq!(encode_segment("!room:example.org"), "%21room%3Aexample.org");
        assert_eq!(encode_segment("$a/b+c"), "%24a%2Fb%2Bc");
        assert_eq!(encode_segment("@ü:x"), "%40%C3%BC%3Ax");
        assert_eq!(encode_segment("plain-_.~"), "plain-_.~");
    }
}
