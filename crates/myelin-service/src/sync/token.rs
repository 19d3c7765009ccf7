//! The `/sync` cursor (`since` / `next_batch`) and the pagination tokens that share its format.

use myelin_core::StreamPos;

/// A `/sync` cursor: the global stream position, the typing serial, and the position up to
/// which to-device messages were delivered (they stay queued until a later sync acknowledges
/// them, and a response carries a bounded number, so this can lag behind `pos`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SyncToken {
    pub pos: StreamPos,
    pub typing: u64,
    pub to_device: StreamPos,
}

impl SyncToken {
    pub fn parse(token: &str) -> Option<SyncToken> {
        let mut parts = token.strip_prefix('s')?.split('_');
        let pos = StreamPos(parts.next()?.parse().ok()?);
        let typing = parts.next().map_or(Some(0), |t| t.parse().ok())?;
        // Tokens from before to-device delivery had nothing queued to acknowledge.
        let to_device = parts
            .next()
            .map_or(Some(pos), |t| t.parse().ok().map(StreamPos))?;
        if parts.next().is_some() || to_device > pos {
            return None;
        }
        Some(SyncToken {
            pos,
            typing,
            to_device,
        })
    }
}

impl std::fmt::Display for SyncToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "s{}_{}_{}", self.pos.0, self.typing, self.to_device.0)
    }
}

/// Pagination tokens share the sync format (the typing part is ignored).
pub fn pagination_token(pos: StreamPos) -> String {
    format!("s{}", pos.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn token(pos: i64, typing: u64, to_device: i64) -> SyncToken {
        SyncToken {
            pos: StreamPos(pos),
            typing,
            to_device: StreamPos(to_device),
        }
    }

    #[test]
    fn round_trips() {
        let t = token(42, 7, 40);
        assert_eq!(t.to_string(), "s42_7_40");
        assert_eq!(SyncToken::parse(&t.to_string()), Some(t));
    }

    #[test]
    fn older_and_pagination_forms_parse() {
        assert_eq!(SyncToken::parse("s5"), Some(token(5, 0, 5)));
        assert_eq!(SyncToken::parse("s5_3"), Some(token(5, 3, 5)));
        assert_eq!(
            SyncToken::parse(&pagination_token(StreamPos(9))),
            Some(token(9, 0, 9))
        );
    }

    #[test]
    fn rejects_malformed() {
        for bad in ["", "5", "s", "sx", "s5_x", "s5_3_x", "s5_3_6", "s5_3_2_1"] {
            assert_eq!(SyncToken::parse(bad), None, "{bad}");
        }
    }
}
