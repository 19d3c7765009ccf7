//! Server ACLs (`m.room.server_acl`): whether a server may take part in a room. Pure functions.
//!
//! Spec: Client-Server API, "Server Access Control Lists (ACLs) for rooms": the server name is
//! compared without its port; an IP literal is refused when `allow_ip_literals` is false; a
//! server matching a `deny` glob is refused; otherwise it must match an `allow` glob (a missing
//! `allow` list allows nobody). Globs use `*` (any run of characters) and `?` (one character).

use ruma::events::StateEventType;
use ruma::ServerName;
use serde_json::Value;

/// Whether the room's server ACL, if it has one, lets `server` take part.
pub(crate) fn room_allows(state: &crate::rooms::RoomState, server: &ServerName) -> bool {
    state
        .content(&StateEventType::RoomServerAcl, "")
        .is_none_or(|content| is_allowed(&content, server))
}

/// Whether `server` passes the ACL with this `content`. A room without an ACL event allows every
/// server: callers only ask when the event exists. Entries that are not strings are ignored.
pub fn is_allowed(content: &Value, server: &ServerName) -> bool {
    let allow_ip_literals = content
        .get("allow_ip_literals")
        .and_then(Value::as_bool)
        .unwrap_or(true);
    if !allow_ip_literals && server.is_ip_literal() {
        return false;
    }
    let host = server.host();
    let globs = |field: &str| {
        content
            .get(field)
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter_map(Value::as_str)
            .collect::<Vec<_>>()
    };
    if globs("deny")
        .into_iter()
        .any(|glob| glob_matches(glob, host))
    {
        return false;
    }
    globs("allow")
        .into_iter()
        .any(|glob| glob_matches(glob, host))
}

/// Matches `text` against a glob with `*` and `?`, ignoring ASCII case (DNS names are
/// case-insensitive). Linear backtracking on the last `*`, so a hostile pattern costs at most
/// `pattern × text` steps.
pub fn glob_matches(pattern: &str, text: &str) -> bool {
    let pattern: Vec<char> = pattern.chars().collect();
    let text: Vec<char> = text.chars().collect();
    let (mut p, mut t) = (0, 0);
    // The position of the last `*` seen and the text position it currently stands for.
    let mut star: Option<(usize, usize)> = None;
    while t < text.len() {
        match pattern.get(p) {
            Some('*') => {
                star = Some((p, t));
                p += 1;
            }
            Some(&c) if c == '?' || c.eq_ignore_ascii_case(&text[t]) => {
                p += 1;
                t += 1;
            }
            _ => match star {
                // Let the last `*` swallow one more character and retry from there.
                Some((star_p, star_t)) => {
                    p = star_p + 1;
                    t = star_t + 1;
                    star = Some((star_p, star_t + 1));
                }
                None => return false,
            },
        }
    }
    pattern[p..].iter().all(|&c| c == '*')
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn server(name: &str) -> &ServerName {
        <&ServerName>::try_from(name).expect("valid server name")
    }

    fn check(content: Value, cases: &[(&str, bool)]) {
        for (name, expected) in cases {
            assert_eq!(
                is_allowed(&content, server(name)),
                *expected,
                "{name} with {content}"
            );
        }
    }

    #[test]
    fn globs() {
        let cases = [
            ("*", "", true),
            ("*", "example.org", true),
            ("example.org", "example.org", true),
            ("example.org", "EXAMPLE.org", true),
            ("example.org", "example.org.evil", false),
            ("*.example.org", "matrix.example.org", true),
            ("*.example.org", "example.org", false),
            ("*example.org", "example.org", true),
            ("?.org", "a.org", true),
            ("?.org", "ab.org", false),
            ("a*b*c", "aXXbYYc", true),
            ("a*b*c", "aXXbYY", false),
            ("a**", "a", true),
            ("", "", true),
            ("", "a", false),
            ("*.*", "localhost", false),
            ("127.0.0.?", "127.0.0.1", true),
        ];
        for (pattern, text, expected) in cases {
            assert_eq!(
                glob_matches(pattern, text),
                expected,
                "{pattern:?} against {text:?}"
            );
        }
    }

    #[test]
    fn deny_wins_over_allow() {
        check(
            json!({ "allow": ["*"], "deny": ["evil.example", "*.evil.example"] }),
            &[
                ("good.example", true),
                ("evil.example", false),
                ("a.evil.example", false),
                ("evil.example:8448", false),
            ],
        );
    }

    #[test]
    fn missing_allow_denies_everyone() {
        check(json!({ "deny": [] }), &[("good.example", false)]);
        check(json!({}), &[("good.example", false)]);
    }

    #[test]
    fn ports_are_ignored() {
        check(
            json!({ "allow": ["good.example"] }),
            &[
                ("good.example", true),
                ("good.example:8448", true),
                ("other.example", false),
            ],
        );
    }

    #[test]
    fn ip_literals() {
        let content = json!({ "allow": ["*"], "allow_ip_literals": false });
        check(
            content,
            &[
                ("127.0.0.1:8448", false),
                ("[::1]:8448", false),
                ("[::1]", false),
                ("good.example", true),
            ],
        );
        // Allowed by default, then matched like any host (without the port).
        check(
            json!({ "allow": ["127.0.0.1"] }),
            &[("127.0.0.1:8448", true), ("127.0.0.2", false)],
        );
        check(
            json!({ "allow": ["*"], "deny": ["[::1]"] }),
            &[("[::1]:1", false), ("[::2]", true)],
        );
    }

    #[test]
    fn malformed_entries_are_ignored() {
        check(
            json!({ "allow": [1, null, "good.example"], "deny": "everyone", "allow_ip_literals": "no" }),
            &[("good.example", true), ("127.0.0.1", false)],
        );
        check(json!({ "allow": "*" }), &[("good.example", false)]);
    }
}
