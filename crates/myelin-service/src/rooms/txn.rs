//! Client transaction IDs, scoped per endpoint.
//!
//! The spec scopes idempotency to the device *and the endpoint*: `PUT /send/.../t1` and
//! `PUT /redact/.../t1` are different requests. Storage keys transactions by
//! `(user, device, key)`, so the key carries the endpoint as a prefix that no client txnId can
//! forge (every stored key has one).

/// The client endpoints that take a txnId and create an event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TxnEndpoint {
    Send,
    Redact,
}

impl TxnEndpoint {
    fn prefix(self) -> &'static str {
        match self {
            TxnEndpoint::Send => "send:",
            TxnEndpoint::Redact => "redact:",
        }
    }

    /// The key stored for a client's `txn_id` on this endpoint.
    pub fn key(self, txn_id: &str) -> String {
        format!("{}{txn_id}", self.prefix())
    }
}

/// The txnId the client sent, for `unsigned.transaction_id`.
pub fn client_txn_id(stored: &str) -> &str {
    [TxnEndpoint::Send, TxnEndpoint::Redact]
        .iter()
        .find_map(|e| stored.strip_prefix(e.prefix()))
        .unwrap_or(stored)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_differ_per_endpoint_and_round_trip() {
        let send = TxnEndpoint::Send.key("t1");
        let redact = TxnEndpoint::Redact.key("t1");
        assert_ne!(send, redact);
        assert_eq!(client_txn_id(&send), "t1");
        assert_eq!(client_txn_id(&redact), "t1");
        // A client txnId that looks like a prefix stays distinct.
        assert_ne!(TxnEndpoint::Send.key("redact:t1"), redact);
        assert_eq!(
            client_txn_id(&TxnEndpoint::Send.key("redact:t1")),
            "redact:t1"
        );
    }
}
