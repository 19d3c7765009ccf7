//! SQLite-specific behaviour: persistence across reopen, schema versioning, snapshot layout.

use myelin_core::StreamPos;
use myelin_storage::conformance::{user, TestRoom};
use myelin_storage::{AccountStore, NewSession, NewUser, RoomStore, StorageError, UserDataStore};
use myelin_storage_sqlite::{SqliteStore, MAX_DELTA_DEPTH, SCHEMA_VERSION};
use serde_json::json;

fn db_path(dir: &tempfile::TempDir) -> std::path::PathBuf {
    dir.path().join("myelin.db")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reopening_keeps_data_and_stream_position() {
    let dir = tempfile::tempdir().unwrap();
    let alice = user("@alice:localhost");
    let (room_id, state, last_pos) = {
        let store = SqliteStore::open(&db_path(&dir)).unwrap();
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
        assert_eq!(store.current_stream_pos().await.unwrap(), last);
        (room.room_id.clone(), room.state.clone(), last)
    };

    let store = SqliteStore::open(&db_path(&dir)).unwrap();
    assert_eq!(
        store.current_stream_pos().await.unwrap(),
        last_pos,
        "position survives reopen"
    );
    assert!(store.get_user(&alice).await.unwrap().is_some());
    assert_eq!(store.current_state(&room_id).await.unwrap(), state);
    assert_eq!(
        store.get_account_data(&alice, None, "m.x").await.unwrap(),
        Some(json!({"a": 1}))
    );
    let next = store.set_presence(&alice, "online", None, 5).await.unwrap();
    assert_eq!(
        next,
        last_pos.next(),
        "new positions continue after the stored ones"
    );
}

#[tokio::test]
async fn newer_schema_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    drop(SqliteStore::open(&db_path(&dir)).unwrap());
    let conn = rusqlite::Connection::open(db_path(&dir)).unwrap();
    let stored: i64 = conn
        .query_row("SELECT MAX(version) FROM schema_version", [], |r| r.get(0))
        .unwrap();
    assert_eq!(stored, SCHEMA_VERSION);
    conn.execute(
        "INSERT INTO schema_version (version, applied_ms) VALUES (?1, 0)",
        [SCHEMA_VERSION + 1],
    )
    .unwrap();
    drop(conn);
    match SqliteStore::open(&db_path(&dir)) {
        Err(StorageError::Incompatible(msg)) => {
            assert!(msg.contains(&(SCHEMA_VERSION + 1).to_string()), "{msg}")
        }
        other => panic!("expected Incompatible, got {other:?}"),
    }
}

#[tokio::test]
async fn opening_configures_wal_and_is_idempotent() {
    let dir = tempfile::tempdir().unwrap();
    drop(SqliteStore::open(&db_path(&dir)).unwrap());
    drop(SqliteStore::open(&db_path(&dir)).unwrap());
    let conn = rusqlite::Connection::open(db_path(&dir)).unwrap();
    let mode: String = conn
        .query_row("PRAGMA journal_mode", [], |r| r.get(0))
        .unwrap();
    assert_eq!(mode, "wal");
    let versions: i64 = conn
        .query_row("SELECT COUNT(*) FROM schema_version", [], |r| r.get(0))
        .unwrap();
    assert_eq!(versions, SCHEMA_VERSION, "each migration recorded once");
}

#[tokio::test]
async fn snapshot_chains_are_cut_into_full_snapshots() {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(&db_path(&dir)).unwrap();
    let mut room = TestRoom::create(&store, "!deep:localhost", "@alice:localhost", "d").await;
    let changes = 3 * MAX_DELTA_DEPTH;
    for i in 0..changes {
        room.state_event(&store, "m.test", &format!("k{i}"), json!({}))
            .await;
    }
    assert_eq!(
        store.state_at_snapshot(room.snapshot).await.unwrap(),
        room.state
    );

    let conn = rusqlite::Connection::open(db_path(&dir)).unwrap();
    let max_depth: i64 = conn
        .query_row("SELECT MAX(depth) FROM state_snapshots", [], |r| r.get(0))
        .unwrap();
    assert_eq!(max_depth, MAX_DELTA_DEPTH);
    let full: i64 = conn
        .query_row(
            "SELECT COUNT(*) FROM state_snapshots WHERE base_id IS NULL",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert!(
        full >= 3,
        "a full snapshot every {MAX_DELTA_DEPTH} deltas, got {full}"
    );
    // A delta stores only what changed.
    let delta_entries: i64 = conn
        .query_row(
            "SELECT COUNT(*) FROM state_snapshot_entries e JOIN state_snapshots s USING (snapshot_id)
             WHERE s.base_id IS NOT NULL",
            [],
            |r| r.get(0),
        )
        .unwrap();
    let deltas: i64 = conn
        .query_row(
            "SELECT COUNT(*) FROM state_snapshots WHERE base_id IS NOT NULL",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(delta_entries, deltas);
}

/// Concurrent writes are group-committed; a failing write in a group rolls back alone, and the
/// others are committed, durable and given dense stream positions.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn group_commit_isolates_failed_writes() {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(&db_path(&dir)).unwrap();
    store.create_user(new_user("taken")).await.unwrap();
    store.create_session(taken_session("FIRST")).await.unwrap();
    let start = store.current_stream_pos().await.unwrap();

    let positions = concurrent_writes(&store).await;
    assert_eq!(
        positions.len(),
        180,
        "every successful write has its own position"
    );
    assert_eq!(
        store.current_stream_pos().await.unwrap(),
        *positions.last().unwrap()
    );
    assert!(positions.first().unwrap() > &start);
    drop(store);

    let store = SqliteStore::open(&db_path(&dir)).unwrap();
    assert_only_successful_writes_stored(&store).await;
}

/// Writes 0 to 199 at once: write `i` creates user `@u{i}` and sets account data, except when
/// `i % 10 == 5`, where it creates a session that fails (on the unique token hash, after
/// inserting its device). Returns the successful writes' positions, sorted and deduplicated.
async fn concurrent_writes(store: &SqliteStore) -> Vec<StreamPos> {
    let mut tasks = Vec::new();
    for i in 0..200 {
        let store = store.clone();
        tasks.push(tokio::spawn(async move {
            if i % 10 == 5 {
                let created = store.create_session(taken_session(&format!("D{i}"))).await;
                return (i, created.is_ok(), None);
            }
            store.create_user(new_user(&format!("u{i}"))).await.unwrap();
            let pos = store
                .set_account_data(&numbered(i), None, "m.x", &json!({ "i": i }))
                .await
                .unwrap();
            (i, true, Some(pos))
        }));
    }
    let mut positions = Vec::new();
    for task in tasks {
        let (i, ok, pos) = task.await.unwrap();
        assert_eq!(ok, i % 10 != 5, "write {i}");
        positions.extend(pos);
    }
    positions.sort();
    positions.dedup();
    positions
}

/// After [`concurrent_writes`]: every successful write is there, no trace of a failed one.
async fn assert_only_successful_writes_stored(store: &SqliteStore) {
    for i in (0..200).filter(|i| i % 10 != 5) {
        let alice = numbered(i);
        assert!(
            store.get_user(&alice).await.unwrap().is_some(),
            "user {i} durable"
        );
        assert_eq!(
            store.get_account_data(&alice, None, "m.x").await.unwrap(),
            Some(json!({ "i": i }))
        );
    }
    assert!(store.get_user(&numbered(5)).await.unwrap().is_none());
    let taken = user("@taken:localhost");
    assert_eq!(
        store.get_device(&taken, "D5").await.unwrap(),
        None,
        "failed write rolled back"
    );
    assert!(store.get_device(&taken, "FIRST").await.unwrap().is_some());
}

fn numbered(i: u32) -> ruma::OwnedUserId {
    user(&format!("@u{i}:localhost"))
}

fn new_user(name: &str) -> NewUser {
    NewUser {
        user_id: user(&format!("@{name}:localhost")),
        password_hash: None,
        is_admin: false,
        created_ms: 1,
        displayname: None,
        is_guest: false,
    }
}

/// A session of `@taken` on `device`; all of them share one token hash, so only the first
/// can be stored.
fn taken_session(device: &str) -> NewSession {
    NewSession {
        user_id: user("@taken:localhost"),
        device_id: device.into(),
        device_display_name: None,
        access_token_hash: "same-token-hash".into(),
        refresh_token_hash: None,
        expires_at_ms: None,
        created_ms: 1,
    }
}

#[tokio::test]
async fn server_name_is_bound_on_first_claim_and_status_reads_it() {
    use myelin_storage::MetaStore;
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(&db_path(&dir)).unwrap();
    assert_eq!(store.server_name().await.unwrap(), None);
    store.claim_server_name("example.org").await.unwrap();
    store.claim_server_name("example.org").await.unwrap();
    match store.claim_server_name("other.org").await {
        Err(StorageError::Incompatible(msg)) => {
            assert!(msg.contains("example.org") && msg.contains("other.org"))
        }
        other => panic!("expected Incompatible, got {other:?}"),
    }
    assert_eq!(store.schema_version().await.unwrap(), SCHEMA_VERSION);
    drop(store);
    let status = myelin_storage_sqlite::status(&db_path(&dir)).unwrap();
    assert_eq!(status.schema_version, SCHEMA_VERSION);
    assert_eq!(status.known_schema_version, SCHEMA_VERSION);
    assert_eq!(status.server_name.as_deref(), Some("example.org"));
    assert!(myelin_storage_sqlite::status(&dir.path().join("missing.db")).is_err());
    assert!(
        !dir.path().join("missing.db").exists(),
        "status creates nothing"
    );
}

/// `myelin db copy` copies the tables listed in `dump::TABLES`: every table of the schema must be
/// there with exactly its columns, or a copy would silently leave data behind.
#[tokio::test]
async fn dump_tables_match_the_schema() {
    use std::collections::BTreeSet;
    let dir = tempfile::tempdir().unwrap();
    drop(SqliteStore::open(&db_path(&dir)).unwrap());
    let conn = rusqlite::Connection::open(db_path(&dir)).unwrap();
    let tables: BTreeSet<String> = conn
        .prepare(
            "SELECT name FROM sqlite_master WHERE type = 'table'
             AND name NOT LIKE 'sqlite_%' AND name <> 'schema_version'
             AND name NOT LIKE 'event_search_fts%'",
        )
        .unwrap()
        .query_map([], |r| r.get(0))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    let listed: BTreeSet<String> = myelin_storage::dump::TABLES
        .iter()
        .map(|t| t.name.to_owned())
        .collect();
    assert_eq!(tables, listed);
    for table in myelin_storage::dump::TABLES {
        let columns: BTreeSet<String> = conn
            .prepare(&format!(
                "SELECT name FROM pragma_table_info('{}')",
                table.name
            ))
            .unwrap()
            .query_map([], |r| r.get(0))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        let mut listed: BTreeSet<String> = table.columns.iter().map(|c| (*c).to_owned()).collect();
        // The search index (`event_search_fts`, kept by triggers) and its `doc_id` are derived
        // from the rows a copy writes.
        if table.name == "event_search" {
            listed.insert("doc_id".to_owned());
        }
        assert_eq!(columns, listed, "columns of {}", table.name);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keys_survive_a_dump_copy() {
    let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let from = SqliteStore::open(&db_path(&a)).unwrap();
    let to = SqliteStore::open(&db_path(&b)).unwrap();
    let path = db_path(&b);
    myelin_storage::conformance::keys_survive_a_dump_copy(&from, to, |to| async move {
        drop(to);
        SqliteStore::open(&path).unwrap()
    })
    .await;
}

/// The relations migration indexes the events stored before it as the server does when storing
/// them: its SQL runs again on a database whose index was dropped.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_relations_migration_indexes_stored_events() {
    use myelin_storage::conformance::{events_for_the_relations_migration, relations_as_indexed};
    let dir = tempfile::tempdir().unwrap();
    let indexed = {
        let store = SqliteStore::open(&db_path(&dir)).unwrap();
        events_for_the_relations_migration(&store).await
    };
    assert!(indexed.iter().filter(|(_, r)| r.is_some()).count() >= 3);
    let conn = rusqlite::Connection::open(db_path(&dir)).unwrap();
    conn.execute_batch("DROP TABLE event_relations;").unwrap();
    conn.execute_batch(include_str!("../migrations/0010_relations.sql"))
        .unwrap();
    drop(conn);
    let store = SqliteStore::open(&db_path(&dir)).unwrap();
    let ids: Vec<_> = indexed.iter().map(|(id, _)| id.clone()).collect();
    assert_eq!(relations_as_indexed(&store, &ids).await, indexed);
}

/// A write that numbered a member for push and then failed leaves no number behind in the
/// writer's cache: the member's next notification numbers them anew and is counted.
#[tokio::test]
async fn member_numbers_of_a_failed_write_are_forgotten() {
    use myelin_storage::{NewPushAction, PushStore};
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(&db_path(&dir)).unwrap();
    let mut room = TestRoom::create(&store, "!num:localhost", "@alice:localhost", "n").await;
    room.member(&store, "@bob:localhost", "@bob:localhost", "join")
        .await;
    let notify_bob = |room: &mut TestRoom| {
        let pdu = room.next_pdu("@alice:localhost", "m.room.message", None, json!({}));
        let mut event = room.new_event(pdu);
        event.push_actions = vec![NewPushAction {
            user_id: user("@bob:localhost"),
            actions: r#"["notify"]"#.into(),
            highlight: false,
            thread_id: None,
            queue: false,
        }];
        event
    };
    // The same event twice: the second insert fails, after the first numbered Bob.
    let event = notify_bob(&mut room);
    let failed = store.persist_events(vec![event.clone(), event]).await;
    assert!(failed.is_err(), "a duplicate event fails the write");

    let event = notify_bob(&mut room);
    room.append(&store, event).await;
    let bob = user("@bob:localhost");
    let counts = store
        .notification_counts(&bob, &room.room_id)
        .await
        .unwrap();
    assert_eq!(counts.main.notifications, 1);
    // And once more, now from the cache.
    let event = notify_bob(&mut room);
    room.append(&store, event).await;
    store.fold_unread_counts(10).await.unwrap();
    let counts = store
        .notification_counts(&bob, &room.room_id)
        .await
        .unwrap();
    assert_eq!(counts.main.notifications, 2);
}
