//! `myelin-bench`: drives a Matrix homeserver over the Client-Server API on loopback and
//! measures it; `compare` runs the same workloads against Myelin and Synapse side by side.
//!
//! The library holds everything but the command line, so that the smoke test can call the
//! workloads directly: [`client`] speaks HTTP, [`workloads`] generate load, [`stats`] and
//! [`report`] turn samples into figures, [`resources`] watches the server process, and
//! [`compare`] starts the servers.

pub mod cli;
pub mod client;
pub mod compare;
pub mod error;
pub mod pool;
pub mod report;
pub mod resources;
pub mod runner;
pub mod setup;
pub mod stats;
pub mod workloads;

pub use client::{Client, User};
pub use error::{BenchError, Result};
pub use report::{Better, Metric, RunReport, WorkloadReport};
