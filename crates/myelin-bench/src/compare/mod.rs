//! `compare`: runs the same workloads against Myelin and Synapse, one after the other, each
//! started by us on a fresh data directory (and, on PostgreSQL, a fresh database), per storage
//! backend, and puts the figures of the two servers on the same backend side by side.

pub mod backend;
pub mod cluster;
pub mod myelin;
pub mod pg_sampler;
pub mod postgres;
pub mod process;
pub mod synapse;
pub mod table;

pub use backend::{Backend, Database};
pub use table::{BackendPair, CompareReport, CompareRow};
