//! The typed errors of the benchmark library.

use std::path::PathBuf;

/// Everything that can go wrong while setting up or running a workload.
#[derive(Debug, thiserror::Error)]
pub enum BenchError {
    #[error("{what}: request failed: {source}")]
    Http {
        what: String,
        #[source]
        source: reqwest::Error,
    },
    #[error("{what}: server answered {status}: {body}")]
    Status {
        what: String,
        status: u16,
        body: String,
    },
    #[error("{what}: unexpected response: {detail}")]
    Response { what: String, detail: String },
    #[error("timed out: {0}")]
    Timeout(String),
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("JSON: {0}")]
    Json(#[from] serde_json::Error),
    #[error("invalid parameters: {0}")]
    Invalid(String),
    #[error("server process: {0}")]
    Server(String),
    #[error("PostgreSQL: {0}")]
    Postgres(String),
    #[error("a load task died: {0}")]
    Task(String),
}

/// The library's result type.
pub type Result<T> = std::result::Result<T, BenchError>;

impl BenchError {
    /// Wraps an I/O error with the path it concerns.
    pub fn io(path: impl Into<PathBuf>, source: std::io::Error) -> BenchError {
        BenchError::Io {
            path: path.into(),
            source,
        }
    }
}
