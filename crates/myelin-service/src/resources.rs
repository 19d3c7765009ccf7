//! Bounds on the work and memory one request or one server can cost: how many other servers a
//! request may reach, and how many rooms' state stay cached in memory.

/// The `[resources]` section of the configuration.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ResourceLimits {
    /// The most distinct other servers one `sendToDevice`, `/keys/query` or `/keys/claim` may
    /// name; a request naming more is refused (400 `M_INVALID_PARAM`) before anything is sent.
    pub max_servers_per_request: usize,
    /// The most rooms whose current state stays in memory (least recently used first out); an
    /// evicted room is reloaded from the database on its next use.
    pub room_cache_capacity: usize,
}

impl Default for ResourceLimits {
    fn default() -> Self {
        ResourceLimits {
            // Client libraries batch key queries and to-device messages by a few hundred users,
            // so a legitimate request names at most that many servers.
            max_servers_per_request: 250,
            room_cache_capacity: 1_000,
        }
    }
}
