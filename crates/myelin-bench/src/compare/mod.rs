//! `compare`: runs the same workloads against Myelin and Synapse, one after the other, each
//! started by us on a fresh data directory, and puts the figures side by side.

pub mod myelin;
pub mod process;
pub mod synapse;
pub mod table;

pub use table::{CompareReport, CompareRow};
