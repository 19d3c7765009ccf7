//! The shared storage conformance suite, run against a fresh PostgreSQL database per test.
//!
//! Needs `MYELIN_TEST_POSTGRES_URL` (e.g. from `scripts/postgres-start`); skipped loudly without
//! it, failed with `MYELIN_REQUIRE_POSTGRES=1`.

use myelin_storage_postgres::testing::TestDatabase;
use myelin_storage_postgres::PgStore;

async fn fresh_store() -> Option<(PgStore, TestDatabase)> {
    let db = TestDatabase::create().await?;
    let store = PgStore::open(db.url(), 4).await.expect("open store");
    Some((store, db))
}

myelin_storage::storage_conformance_tests!(match fresh_store().await {
    Some(fresh) => fresh,
    None => return,
});
