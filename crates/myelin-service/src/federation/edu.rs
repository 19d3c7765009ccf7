//! The EDU types this server sends and handles, as one enum rather than strings scattered over
//! the subsystems that queue them (ephemeral, e2ee) and the inbound dispatch.

use serde_json::{json, Value};

/// An EDU type (spec: Server-Server API, "EDUs").
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EduKind {
    Typing,
    Receipt,
    Presence,
    DeviceListUpdate,
    SigningKeyUpdate,
    DirectToDevice,
}

impl EduKind {
    /// The kind an `edu_type` names; `None` for a type we do not handle.
    pub fn parse(edu_type: &str) -> Option<EduKind> {
        Some(match edu_type {
            "m.typing" => EduKind::Typing,
            "m.receipt" => EduKind::Receipt,
            "m.presence" => EduKind::Presence,
            "m.device_list_update" => EduKind::DeviceListUpdate,
            "m.signing_key_update" => EduKind::SigningKeyUpdate,
            "m.direct_to_device" => EduKind::DirectToDevice,
            _ => return None,
        })
    }

    pub fn as_str(self) -> &'static str {
        match self {
            EduKind::Typing => "m.typing",
            EduKind::Receipt => "m.receipt",
            EduKind::Presence => "m.presence",
            EduKind::DeviceListUpdate => "m.device_list_update",
            EduKind::SigningKeyUpdate => "m.signing_key_update",
            EduKind::DirectToDevice => "m.direct_to_device",
        }
    }

    /// Whether an incoming EDU of this kind is applied before the transaction's PDUs: key
    /// material (room keys in to-device messages, device lists) that the PDUs may need to be
    /// decrypted. The others (receipts of events in the same transaction) come after them.
    pub fn goes_before_pdus(self) -> bool {
        matches!(
            self,
            EduKind::DirectToDevice | EduKind::DeviceListUpdate | EduKind::SigningKeyUpdate
        )
    }

    /// The EDU as queued in the outbox: `{"edu_type": …, "content": …}`.
    pub fn wire(self, content: Value) -> String {
        json!({ "edu_type": self.as_str(), "content": content }).to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_kind_round_trips_through_its_wire_name() {
        use EduKind::*;
        for kind in [
            Typing,
            Receipt,
            Presence,
            DeviceListUpdate,
            SigningKeyUpdate,
            DirectToDevice,
        ] {
            assert_eq!(EduKind::parse(kind.as_str()), Some(kind));
        }
        assert_eq!(EduKind::parse("m.unknown"), None);
    }

    #[test]
    fn key_material_goes_first() {
        assert!(EduKind::DirectToDevice.goes_before_pdus());
        assert!(EduKind::DeviceListUpdate.goes_before_pdus());
        assert!(!EduKind::Receipt.goes_before_pdus());
        assert!(!EduKind::Typing.goes_before_pdus());
    }

    #[test]
    fn wire_form() {
        let wire: Value = serde_json::from_str(&EduKind::Typing.wire(json!({"a": 1}))).unwrap();
        assert_eq!(wire, json!({"edu_type": "m.typing", "content": {"a": 1}}));
    }
}
