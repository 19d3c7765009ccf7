//! Endpoint lists by pattern, for the policies decided once at authentication: what guests may
//! call (`guest.rs`) and what suspended accounts may not (`suspension.rs`).

use axum::http::Method;

/// `(method, path after the version segment)`; `*` matches one segment.
pub type EndpointList = &'static [(&'static str, &'static str)];

/// The part of `path` after one of `prefixes` and the version segment (`v3`, `r0`, `v1`,
/// `unstable`), which does not change what a policy allows.
pub fn endpoint_after<'a>(path: &'a str, prefixes: &[&str]) -> Option<&'a str> {
    let rest = prefixes.iter().find_map(|p| path.strip_prefix(p))?;
    rest.split_once('/').map(|(_version, endpoint)| endpoint)
}

/// Whether `method endpoint` matches an entry of `list`.
pub fn listed(list: EndpointList, method: &Method, endpoint: &str) -> bool {
    let segments: Vec<&str> = endpoint.trim_end_matches('/').split('/').collect();
    list.iter().any(|(m, pattern)| {
        *m == method.as_str() && {
            let pattern: Vec<&str> = pattern.split('/').collect();
            pattern.len() == segments.len()
                && pattern
                    .iter()
                    .zip(&segments)
                    .all(|(p, s)| *p == "*" || p == s)
        }
    })
}
