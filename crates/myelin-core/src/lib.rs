//! Core types shared by every Myelin crate: the PDU, stream positions and the clock. No IO.

pub mod clock;
pub mod pdu;
pub mod stream;

pub use clock::{Clock, SystemClock};
pub use pdu::{Pdu, PduError, Relation, SearchableText};
pub use stream::StreamPos;

/// Re-exported so that every crate names Matrix types the same way.
pub use ruma;
