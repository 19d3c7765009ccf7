//! PostgreSQL-specific behaviour: persistence across reopen, schema versioning, the server-name
//! binding, and a clear error for an unreachable server.

use myelin_core::StreamPos;
use myelin_storage::conformance::{user, TestRoom};
use myelin_storage::{AccountStore, MetaStore, NewUser, RoomStore, StorageError, UserDataStore};
use myelin_storage_postgres::testing::TestDatabase;
use myelin_storage_postgres::{PgStore, MAX_DELTA_DEPTH, SCHEMA_VERSION};
use serde_json::json;

async fn psql(url: &str, sql: &str) -> Vec<tokio_postgres::Row> {
    let (client, connection) = tokio_postgres::connect(url, tokio_postgres::NoTls)
        .await
        .unwrap();
    tokio::spawn(connection);
    client.query(sql, &[]).await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reopening_keeps_data_and_stream_position() {
    let Some(db) = TestDatabase::create().await else {
        return;
    };
    let alice = user("@alice:localhost");
    let (room_id, state, last_pos) = {
        let store = PgStore::open(db.url(), 2).await.unwrap();
        assert_eq!(store.current_stream_pos().await.unwrap(), StreamPos::ZERO);
        store
            .create_user(NewUser {
                user_id: alice.clone(),
                password_hash: Some("h".into()),
                is_admin: false,
                created_ms: 1,
                displayname: None,
                is_guest: false,
            })
            .await
            .unwrap();
        let mut room = TestRoom::create(&store, "!keep:localhost", alice.as_str(), "k").await;
        room.message(&store, alice.as_str(), "hello").await;
        let last = store
            .set_account_data(&alice, None, "m.x", &json!({"a": 1}))
            .await
            .unwrap();
        (room.room_id.clone(), room.state.clone(), last)
    };
    let store = PgStore::open(db.url(), 2).await.unwrap();
    assert_eq!(store.current_stream_pos().await.unwrap(), last_pos);
    assert!(store.get_user(&alice).await.unwrap().is_some());
    assert_eq!(store.current_state(&room_id).await.unwrap(), state);
    let next = store.set_presence(&alice, "online", None, 5).await.unwrap();
    assert_eq!(
        next,
        last_pos.next(),
        "new positions continue after the stored ones"
    );
}

#[tokio::test]
async fn newer_schema_is_refused_and_migrations_are_recorded_once() {
    let Some(db) = TestDatabase::create().await else {
        return;
    };
    drop(PgStore::open(db.url(), 1).await.unwrap());
    drop(PgStore::open(db.url(), 1).await.unwrap());
    let rows = psql(
        db.url(),
        "SELECT COUNT(*), MAX(version) FROM schema_version",
    )
    .await;
    assert_eq!(
        (rows[0].get::<_, i64>(0), rows[0].get::<_, i64>(1)),
        (SCHEMA_VERSION, SCHEMA_VERSION)
    );
    let status = myelin_storage_postgres::status(db.url()).await.unwrap();
    assert_eq!(status.schema_version, SCHEMA_VERSION);
    assert_eq!(status.server_name, None);

    psql(
        db.url(),
        &format!(
            "INSERT INTO schema_version (version, applied_ms) VALUES ({}, 0)",
            SCHEMA_VERSION + 1
        ),
    )
    .await;
    match PgStore::open(db.url(), 1).await {
        Err(StorageError::Incompatible(msg)) => {
            assert!(msg.contains(&(SCHEMA_VERSION + 1).to_string()), "{msg}")
        }
        other => panic!("expected Incompatible, got {other:?}"),
    }
}

#[tokio::test]
async fn server_name_is_bound_on_first_claim() {
    let Some(db) = TestDatabase::create().await else {
        return;
    };
    let store = PgStore::open(db.url(), 2).await.unwrap();
    assert_eq!(store.server_name().await.unwrap(), None);
    store.claim_server_name("example.org").await.unwrap();
    store.claim_server_name("example.org").await.unwrap();
    assert_eq!(
        store.server_name().await.unwrap().as_deref(),
        Some("example.org")
    );
    match store.claim_server_name("other.org").await {
        Err(StorageError::Incompatible(msg)) => {
            assert!(msg.contains("example.org") && msg.contains("other.org"))
        }
        other => panic!("expected Incompatible, got {other:?}"),
    }
    assert_eq!(store.schema_version().await.unwrap(), SCHEMA_VERSION);
}

#[tokio::test]
async fn unreachable_server_is_a_clear_error_without_the_password() {
    let err = PgStore::open(
        "postgres://me:secret@127.0.0.1:1/nowhere?connect_timeout=2",
        1,
    )
    .await
    .unwrap_err()
    .to_string();
    assert!(
        err.contains("cannot connect to PostgreSQL at 127.0.0.1:1/nowhere"),
        "{err}"
    );
    assert!(!err.contains("secret"), "{err}");
    let err = PgStore::open("postgres://me:secret@127.0.0.1:1/x?bogus=1", 1)
        .await
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("invalid PostgreSQL URL") && !err.contains("secret"),
        "{err}"
    );
}

#[tokio::test]
async fn snapshot_chains_are_cut_into_full_snapshots() {
    let Some(db) = TestDatabase::create().await else {
        return;
    };
    let store = PgStore::open(db.url(), 2).await.unwrap();
    let mut room = TestRoom::create(&store, "!deep:localhost", "@alice:localhost", "d").await;
    for i in 0..2 * MAX_DELTA_DEPTH + 5 {
        room.state_event(&store, "m.test", &format!("k{i}"), json!({}))
            .await;
    }
    assert_eq!(
        store.state_at_snapshot(room.snapshot).await.unwrap(),
        room.state
    );
    let rows = psql(
        db.url(),
        "SELECT MAX(depth), COUNT(*) FILTER (WHERE base_id IS NULL) FROM state_snapshots",
    )
    .await;
    assert_eq!(rows[0].get::<_, i64>(0), MAX_DELTA_DEPTH);
    assert!(rows[0].get::<_, i64>(1) >= 3);
}

/// `myelin db copy` copies the tables listed in `dump::TABLES`: every table of the schema must be
/// there with exactly its columns, or a copy would silently leave data behind.
#[tokio::test]
async fn dump_tables_match_the_schema() {
    use std::collections::{BTreeMap, BTreeSet};
    let Some(db) = TestDatabase::create().await else {
        return;
    };
    drop(PgStore::open(db.url(), 1).await.unwrap());
    let rows = psql(
        db.url(),
        "SELECT table_name::TEXT, column_name::TEXT FROM information_schema.columns
         WHERE table_schema = 'public' AND table_name <> 'schema_version'",
    )
    .await;
    let mut schema: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for row in &rows {
        schema.entry(row.get(0)).or_default().insert(row.get(1));
    }
    let listed: BTreeMap<String, BTreeSet<String>> = myelin_storage::dump::TABLES
        .iter()
        .map(|t| {
            let columns = t.columns.iter().map(|c| (*c).to_owned()).collect();
            (t.name.to_owned(), columns)
        })
        .collect();
    assert_eq!(schema, listed);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keys_survive_a_dump_copy() {
    let (Some(a), Some(b)) = (TestDatabase::create().await, TestDatabase::create().await) else {
        return;
    };
    let from = PgStore::open(a.url(), 2).await.unwrap();
    let to = PgStore::open(b.url(), 2).await.unwrap();
    let url = b.url().to_owned();
    myelin_storage::conformance::keys_survive_a_dump_copy(&from, to, |to| async move {
        drop(to);
        PgStore::open(&url, 2).await.unwrap()
    })
    .await;
}

/// The relations migration indexes the events stored before it as the server does when storing
/// them: it runs again on a database taken back to the schema before it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_relations_migration_indexes_stored_events() {
    use myelin_storage::conformance::{events_for_the_relations_migration, relations_as_indexed};
    let Some(db) = TestDatabase::create().await else {
        return;
    };
    let indexed = {
        let store = PgStore::open(db.url(), 2).await.unwrap();
        events_for_the_relations_migration(&store).await
    };
    assert!(indexed.iter().filter(|(_, r)| r.is_some()).count() >= 3);
    psql(db.url(), "DROP TABLE event_relations").await;
    let (client, connection) = tokio_postgres::connect(db.url(), tokio_postgres::NoTls)
        .await
        .unwrap();
    tokio::spawn(connection);
    client
        .batch_execute(include_str!("../migrations/0009_relations.sql"))
        .await
        .unwrap();
    let store = PgStore::open(db.url(), 2).await.unwrap();
    let ids: Vec<_> = indexed.iter().map(|(id, _)| id.clone()).collect();
    assert_eq!(relations_as_indexed(&store, &ids).await, indexed);
}
