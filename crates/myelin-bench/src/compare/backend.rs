//! The storage backends a comparison runs on, and where each server run keeps its data.

use serde::{Deserialize, Serialize};

use super::postgres::PgDatabase;

/// A storage backend both servers support.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Backend {
    /// An SQLite file in the server's data directory.
    Sqlite,
    /// A fresh database on a PostgreSQL server.
    #[value(alias = "postgresql", alias = "pg")]
    Postgres,
}

impl Backend {
    /// `sqlite` or `postgres`.
    pub fn name(self) -> &'static str {
        match self {
            Backend::Sqlite => "sqlite",
            Backend::Postgres => "postgres",
        }
    }
}

impl std::fmt::Display for Backend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// Where one server run keeps its data.
#[derive(Debug, Clone, Copy)]
pub enum Database<'a> {
    /// A file in the run's fresh data directory.
    Sqlite,
    /// A database created for this run alone.
    Postgres(&'a PgDatabase),
}

impl Database<'_> {
    /// The backend this is.
    pub fn backend(&self) -> Backend {
        match self {
            Database::Sqlite => Backend::Sqlite,
            Database::Postgres(_) => Backend::Postgres,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::ValueEnum as _;

    #[test]
    fn names_and_aliases() {
        assert_eq!(Backend::Sqlite.to_string(), "sqlite");
        assert_eq!(
            serde_json::to_value(Backend::Postgres).expect("serialize"),
            "postgres"
        );
        for name in ["postgres", "postgresql", "pg"] {
            assert_eq!(Backend::from_str(name, true), Ok(Backend::Postgres));
        }
        assert!(Backend::from_str("mysql", true).is_err());
    }
}
