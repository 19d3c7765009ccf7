//! Stream positions: one global, strictly increasing counter orders every persisted change
//! (events, account data, receipts, presence, device-list changes, to-device messages), so a
//! single number is a complete `/sync` cursor. History fetched from other servers is placed
//! below 0 instead, out of the counter's way.

use serde::{Deserialize, Serialize};

/// A position in the global stream. Position `p` means "everything with position <= p".
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default, Serialize, Deserialize,
)]
pub struct StreamPos(pub i64);

impl StreamPos {
    pub const ZERO: StreamPos = StreamPos(0);

    pub fn next(self) -> StreamPos {
        StreamPos(self.0 + 1)
    }
}

impl std::fmt::Display for StreamPos {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}
