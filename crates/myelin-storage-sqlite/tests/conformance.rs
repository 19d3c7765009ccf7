//! The shared storage conformance suite, run against a fresh SQLite file per test.

use myelin_storage_sqlite::SqliteStore;

fn fresh_store() -> (SqliteStore, tempfile::TempDir) {
    let dir = tempfile::tempdir().expect("temp dir");
    let store = SqliteStore::open(&dir.path().join("myelin.db")).expect("open store");
    (store, dir)
}

myelin_storage::storage_conformance_tests!(fresh_store());
