//! Backend-independent conformance tests for the storage traits (feature `conformance`).
//!
//! Each public `async fn` checks one area against a fresh, empty store and panics on failure.
//! [`storage_conformance_tests!`](crate::storage_conformance_tests) turns them into one
//! `#[tokio::test]` each for a backend.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use myelin_core::{Pdu, StreamPos};
use ruma::{
    OwnedDeviceId, OwnedEventId, OwnedRoomAliasId, OwnedRoomId, OwnedUserId, RoomVersionId,
};
use serde_json::{json, Value};

use crate::{
    BackfilledEvent, Direction, MembershipChange, MembershipRecord, NewEvent, NewOutlier, NewRoom,
    NewSession, NewState, NewUser, OutboxContent, OutboxEntry, OutlierStatus, Persisted,
    ReceiptRecord, SnapshotId, StateKey, StateMap, Storage, TokenOwner, UserRecord,
};

/// Expands to one `#[tokio::test]` per conformance test.
///
/// `$make` is evaluated once per test and must yield `(store, guard)`: `store` implements
/// [`Storage`] and `guard` is kept alive until the test ends (e.g. a temporary directory; use
/// `()` if there is nothing to keep). The calling crate needs `tokio` with the `macros` and
/// `rt-multi-thread` features.
#[macro_export]
macro_rules! storage_conformance_tests {
    ($make:expr) => {
        $crate::storage_conformance_tests!(@by_ref $make;
            users_and_sessions,
            devices,
            events_state_and_snapshots,
            snapshot_chains,
            current_state_follows_snapshot,
            redactions,
            room_events_pagination,
            rooms_with_new_events,
            memberships,
            aliases,
            room_directory,
            txn_ids,
            account_data,
            receipts,
            presence,
            filters,
            failed_writes_roll_back,
            outliers_stay_out_of_the_timeline,
            federation_outbox,
            received_transactions,
            resolved_current_state_replaces_current_state,
            outside_memberships,
            backfilled_events_go_before_the_timeline,
            events_near_a_timestamp,
            device_keys_and_claims,
            cross_signing_keys,
            device_list_changes,
            to_device_messages,
            key_uploads_and_claims_in_detail,
            cross_signing_keys_per_user_and_kind,
            device_list_changes_share_the_stream,
            to_device_batches_and_late_devices,
            to_device_transactions_run_once,
            deleting_devices_removes_their_keys,
        );
        $crate::storage_conformance_tests!(@by_arc $make;
            stream_positions_increase_under_concurrency,
            concurrent_writers_do_not_collide,
            readers_never_see_a_gap_in_positions,
        );
    };
    (@by_ref $make:expr; $($name:ident),* $(,)?) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $name() {
                let (store, _guard) = $make;
                $crate::conformance::$name(&store).await;
            }
        )*
    };
    (@by_arc $make:expr; $($name:ident),* $(,)?) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $name() {
                let (store, _guard) = $make;
                $crate::conformance::$name(::std::sync::Arc::new(store)).await;
            }
        )*
    };
}

mod keys;
mod keys_in_detail;
pub use keys::*;
pub use keys_in_detail::*;

// ---- fixtures ---------------------------------------------------------------------------------

pub fn user(id: &str) -> OwnedUserId {
    OwnedUserId::try_from(id).expect("valid user ID")
}

pub fn room(id: &str) -> OwnedRoomId {
    OwnedRoomId::try_from(id).expect("valid room ID")
}

pub fn event(id: &str) -> OwnedEventId {
    OwnedEventId::try_from(id).expect("valid event ID")
}

pub fn device(id: &str) -> OwnedDeviceId {
    OwnedDeviceId::from(id)
}

fn alias(id: &str) -> OwnedRoomAliasId {
    OwnedRoomAliasId::try_from(id).expect("valid alias")
}

fn key(kind: &str, state_key: &str) -> StateKey {
    (kind.to_owned(), state_key.to_owned())
}

/// Builds a PDU from hand-written JSON.
#[allow(clippy::too_many_arguments)]
pub fn pdu(
    event_id: &str,
    room_id: &str,
    sender: &str,
    kind: &str,
    state_key: Option<&str>,
    content: Value,
    depth: u64,
    prev_events: &[OwnedEventId],
) -> Pdu {
    let mut json = json!({
        "type": kind,
        "sender": sender,
        "room_id": room_id,
        "origin_server_ts": 1_700_000_000_000u64 + depth,
        "content": content,
        "depth": depth,
        "prev_events": prev_events,
        "auth_events": [],
    });
    if let Some(state_key) = state_key {
        json["state_key"] = json!(state_key);
    }
    let raw = serde_json::value::to_raw_value(&json).expect("serializable");
    Pdu::from_json(event(event_id), raw).expect("valid PDU")
}

/// A linear room: every event extends the previous one and moves the current state.
pub struct TestRoom {
    pub room_id: OwnedRoomId,
    pub creator: OwnedUserId,
    /// The state snapshot after the last event.
    pub snapshot: SnapshotId,
    /// The expected current state.
    pub state: StateMap,
    pub last: OwnedEventId,
    pub depth: u64,
    tag: String,
    counter: u32,
}

impl TestRoom {
    /// Creates the room (create event and the creator's join). Event IDs start with `$<tag>`.
    pub async fn create(store: &dyn Storage, room_id: &str, creator: &str, tag: &str) -> TestRoom {
        let create_id = event(&format!("${tag}create"));
        let create = pdu(
            create_id.as_str(),
            room_id,
            creator,
            "m.room.create",
            Some(""),
            json!({"room_version": "10"}),
            1,
            &[],
        );
        let persisted = store
            .persist_event(NewEvent {
                pdu: create,
                room: Some(NewRoom {
                    room_id: room(room_id),
                    version: RoomVersionId::V10,
                    creator: user(creator),
                    created_ms: 1_700_000_000_000,
                }),
                state: NewState::Changed {
                    base: None,
                    changes: vec![(key("m.room.create", ""), create_id.clone())],
                },
                updates_current_state: true,
                membership: None,
                txn: None,
                redaction: None,
                forward_extremities: vec![create_id.clone()],
                resolved_current_state: None,
                destinations: Vec::new(),
            })
            .await
            .expect("persist create event");
        let mut test_room = TestRoom {
            room_id: room(room_id),
            creator: user(creator),
            snapshot: persisted.state_snapshot,
            state: StateMap::from([(key("m.room.create", ""), create_id.clone())]),
            last: create_id,
            depth: 1,
            tag: tag.to_owned(),
            counter: 0,
        };
        test_room.member(store, creator, creator, "join").await;
        test_room
    }

    /// A fresh event ID in this room.
    pub fn next_id(&mut self) -> String {
        self.counter += 1;
        format!("${}{}", self.tag, self.counter)
    }

    /// The next event in the chain (not persisted).
    pub fn next_pdu(
        &mut self,
        sender: &str,
        kind: &str,
        state_key: Option<&str>,
        content: Value,
    ) -> Pdu {
        let id = self.next_id();
        pdu(
            &id,
            self.room_id.as_str(),
            sender,
            kind,
            state_key,
            content,
            self.depth + 1,
            std::slice::from_ref(&self.last),
        )
    }

    /// The `NewEvent` that appends `pdu` linearly (state events change their key).
    pub fn new_event(&self, pdu: Pdu) -> NewEvent {
        let state = match &pdu.state_key {
            Some(state_key) => NewState::Changed {
                base: Some(self.snapshot),
                changes: vec![(
                    (pdu.kind.to_string(), state_key.clone()),
                    pdu.event_id.clone(),
                )],
            },
            None => NewState::Same(self.snapshot),
        };
        NewEvent {
            forward_extremities: vec![pdu.event_id.clone()],
            resolved_current_state: None,
            destinations: Vec::new(),
            pdu,
            room: None,
            state,
            updates_current_state: true,
            membership: None,
            txn: None,
            redaction: None,
        }
    }

    /// Persists an event built by [`TestRoom::new_event`] and advances the chain.
    pub async fn append(&mut self, store: &dyn Storage, new_event: NewEvent) -> Persisted {
        let pdu = new_event.pdu.clone();
        let persisted = store.persist_event(new_event).await.expect("persist event");
        if let Some(state_key) = &pdu.state_key {
            self.state.insert(
                (pdu.kind.to_string(), state_key.clone()),
                pdu.event_id.clone(),
            );
        }
        self.snapshot = persisted.state_snapshot;
        self.last = pdu.event_id;
        self.depth += 1;
        persisted
    }

    pub async fn state_event(
        &mut self,
        store: &dyn Storage,
        kind: &str,
        state_key: &str,
        content: Value,
    ) -> (OwnedEventId, Persisted) {
        let pdu = self.next_pdu(
            self.creator.clone().as_str(),
            kind,
            Some(state_key),
            content,
        );
        let id = pdu.event_id.clone();
        let persisted = self.append(store, self.new_event(pdu)).await;
        (id, persisted)
    }

    pub async fn message(
        &mut self,
        store: &dyn Storage,
        sender: &str,
        body: &str,
    ) -> (OwnedEventId, Persisted) {
        let pdu = self.next_pdu(
            sender,
            "m.room.message",
            None,
            json!({"msgtype": "m.text", "body": body}),
        );
        let id = pdu.event_id.clone();
        let persisted = self.append(store, self.new_event(pdu)).await;
        (id, persisted)
    }

    /// An `m.room.member` event by `sender` about `target`, with its membership change.
    pub async fn member(
        &mut self,
        store: &dyn Storage,
        sender: &str,
        target: &str,
        membership: &str,
    ) -> (OwnedEventId, Persisted) {
        let pdu = self.next_pdu(
            sender,
            "m.room.member",
            Some(target),
            json!({"membership": membership}),
        );
        let id = pdu.event_id.clone();
        let mut new_event = self.new_event(pdu);
        new_event.membership = Some(MembershipChange {
            user_id: user(target),
            membership: membership.to_owned(),
        });
        let persisted = self.append(store, new_event).await;
        (id, persisted)
    }
}

fn new_user(id: &str, password_hash: Option<&str>) -> NewUser {
    NewUser {
        user_id: user(id),
        password_hash: password_hash.map(str::to_owned),
        is_admin: false,
        created_ms: 1_000,
        displayname: None,
    }
}

fn session(user_id: &str, device_id: &str, token: &str, refresh: Option<&str>) -> NewSession {
    NewSession {
        user_id: user(user_id),
        device_id: device(device_id),
        device_display_name: Some(format!("{device_id} name")),
        access_token_hash: token.to_owned(),
        refresh_token_hash: refresh.map(str::to_owned),
        expires_at_ms: None,
        created_ms: 2_000,
    }
}

fn ids<'a>(events: impl IntoIterator<Item = &'a crate::EventRecord>) -> Vec<OwnedEventId> {
    events.into_iter().map(|e| e.pdu.event_id.clone()).collect()
}

// ---- accounts ---------------------------------------------------------------------------------

pub async fn users_and_sessions(store: &dyn Storage) {
    let alice = user("@alice:localhost");
    let mut new_alice = new_user("@alice:localhost", Some("hash1"));
    new_alice.displayname = Some("Alice".into());
    assert!(
        store.create_user(new_alice).await.unwrap(),
        "new user is created"
    );
    let mut duplicate = new_user("@alice:localhost", Some("other"));
    duplicate.is_admin = true;
    assert!(
        !store.create_user(duplicate).await.unwrap(),
        "taken ID is refused"
    );
    let expected = UserRecord {
        user_id: alice.clone(),
        password_hash: Some("hash1".into()),
        is_admin: false,
        deactivated: false,
        created_ms: 1_000,
        displayname: Some("Alice".into()),
        avatar_url: None,
    };
    assert_eq!(
        store.get_user(&alice).await.unwrap(),
        Some(expected.clone()),
        "refused duplicate wrote nothing"
    );
    assert_eq!(
        store.get_user(&user("@nobody:localhost")).await.unwrap(),
        None
    );
    assert!(store
        .create_user(NewUser {
            is_admin: true,
            ..new_user("@admin:localhost", None)
        })
        .await
        .unwrap());
    let admin = store
        .get_user(&user("@admin:localhost"))
        .await
        .unwrap()
        .unwrap();
    assert!(admin.is_admin);
    assert_eq!(admin.password_hash, None);

    store.set_password_hash(&alice, "hash2").await.unwrap();
    store.set_displayname(&alice, None).await.unwrap();
    store
        .set_avatar_url(&alice, Some("mxc://localhost/abc"))
        .await
        .unwrap();
    let updated = store.get_user(&alice).await.unwrap().unwrap();
    assert_eq!(
        updated,
        UserRecord {
            password_hash: Some("hash2".into()),
            displayname: None,
            avatar_url: Some("mxc://localhost/abc".into()),
            ..expected
        }
    );
    store
        .set_displayname(&alice, Some("Alice 2"))
        .await
        .unwrap();
    store.set_avatar_url(&alice, None).await.unwrap();
    let updated = store.get_user(&alice).await.unwrap().unwrap();
    assert_eq!(updated.displayname.as_deref(), Some("Alice 2"));
    assert_eq!(updated.avatar_url, None);

    // Sessions and tokens.
    let mut first = session("@alice:localhost", "DEV1", "at1", Some("rt1"));
    first.expires_at_ms = Some(5_000);
    store.create_session(first).await.unwrap();
    let owner = |expires_at_ms| {
        Some(TokenOwner {
            user_id: alice.clone(),
            device_id: device("DEV1"),
            expires_at_ms,
        })
    };
    assert_eq!(
        store.find_access_token("at1").await.unwrap(),
        owner(Some(5_000))
    );
    assert_eq!(store.find_access_token("unknown").await.unwrap(), None);

    assert_eq!(
        store
            .refresh_session("rt1", "at2", "rt2", Some(9_000))
            .await
            .unwrap(),
        owner(Some(9_000))
    );
    assert_eq!(
        store.find_access_token("at2").await.unwrap(),
        owner(Some(9_000))
    );
    assert_eq!(
        store
            .refresh_session("rt1", "at3", "rt3", None)
            .await
            .unwrap(),
        None,
        "a refresh token works once"
    );
    assert_eq!(store.find_access_token("at3").await.unwrap(), None);
    assert_eq!(
        store
            .refresh_session("unknown", "at4", "rt4", None)
            .await
            .unwrap(),
        None
    );
    assert_eq!(
        store
            .refresh_session("rt2", "at5", "rt5", None)
            .await
            .unwrap(),
        owner(None),
        "the new refresh token works"
    );
    assert_eq!(store.find_access_token("at5").await.unwrap(), owner(None));

    // Logging in again on the same device keeps the device (and its name).
    let mut again = session("@alice:localhost", "DEV1", "at6", None);
    again.device_display_name = Some("Renamed".into());
    store.create_session(again).await.unwrap();
    assert_eq!(store.find_access_token("at6").await.unwrap(), owner(None));
    let devices = store.list_devices(&alice).await.unwrap();
    assert_eq!(devices.len(), 1);
    assert_eq!(devices[0].display_name.as_deref(), Some("DEV1 name"));

    // Deactivation removes every device and token.
    store
        .create_session(session("@alice:localhost", "DEV2", "at7", Some("rt7")))
        .await
        .unwrap();
    store.deactivate_user(&alice).await.unwrap();
    let deactivated = store.get_user(&alice).await.unwrap().unwrap();
    assert!(deactivated.deactivated);
    assert!(store.list_devices(&alice).await.unwrap().is_empty());
    for token in ["at1", "at2", "at5", "at6", "at7"] {
        assert_eq!(
            store.find_access_token(token).await.unwrap(),
            None,
            "{token} survived deactivation"
        );
    }
    assert_eq!(
        store
            .refresh_session("rt7", "at8", "rt8", None)
            .await
            .unwrap(),
        None
    );
    assert!(
        !store
            .get_user(&user("@admin:localhost"))
            .await
            .unwrap()
            .unwrap()
            .deactivated
    );
}

pub async fn devices(store: &dyn Storage) {
    let alice = user("@alice:localhost");
    let carol = user("@carol:localhost");
    store
        .create_user(new_user("@alice:localhost", Some("h")))
        .await
        .unwrap();
    store
        .create_user(new_user("@carol:localhost", Some("h")))
        .await
        .unwrap();
    for (dev, token) in [("DEV1", "t1"), ("DEV2", "t2"), ("DEV3", "t3")] {
        store
            .create_session(session("@alice:localhost", dev, token, None))
            .await
            .unwrap();
    }
    store
        .create_session(session("@carol:localhost", "DEV1", "c1", None))
        .await
        .unwrap();

    let mut listed: Vec<String> = store
        .list_devices(&alice)
        .await
        .unwrap()
        .into_iter()
        .map(|d| d.device_id.to_string())
        .collect();
    listed.sort();
    assert_eq!(listed, ["DEV1", "DEV2", "DEV3"]);
    let dev1 = store
        .get_device(&alice, "DEV1")
        .await
        .unwrap()
        .expect("device exists");
    assert_eq!(dev1.user_id, alice);
    assert_eq!(dev1.device_id, device("DEV1"));
    assert_eq!(dev1.display_name.as_deref(), Some("DEV1 name"));
    assert_eq!((dev1.last_seen_ms, dev1.last_seen_ip), (None, None));
    assert_eq!(store.get_device(&alice, "NOPE").await.unwrap(), None);
    assert_eq!(
        store
            .get_device(&user("@nobody:localhost"), "DEV1")
            .await
            .unwrap(),
        None
    );

    assert!(store
        .set_device_display_name(&alice, "DEV1", Some("Laptop"))
        .await
        .unwrap());
    assert!(!store
        .set_device_display_name(&alice, "NOPE", Some("x"))
        .await
        .unwrap());
    assert_eq!(
        store
            .get_device(&alice, "DEV1")
            .await
            .unwrap()
            .unwrap()
            .display_name
            .as_deref(),
        Some("Laptop")
    );
    assert!(store
        .set_device_display_name(&alice, "DEV1", None)
        .await
        .unwrap());
    assert_eq!(
        store
            .get_device(&alice, "DEV1")
            .await
            .unwrap()
            .unwrap()
            .display_name,
        None
    );
    assert_eq!(
        store
            .get_device(&carol, "DEV1")
            .await
            .unwrap()
            .unwrap()
            .display_name
            .as_deref(),
        Some("DEV1 name"),
        "devices are per user"
    );

    store
        .touch_device(&alice, "DEV2", 7_000, Some("10.0.0.1"))
        .await
        .unwrap();
    let dev2 = store.get_device(&alice, "DEV2").await.unwrap().unwrap();
    assert_eq!(
        (dev2.last_seen_ms, dev2.last_seen_ip.as_deref()),
        (Some(7_000), Some("10.0.0.1"))
    );
    store
        .touch_device(&alice, "NOPE", 7_000, None)
        .await
        .unwrap();

    store
        .delete_devices(&alice, &[device("DEV1")])
        .await
        .unwrap();
    assert_eq!(store.get_device(&alice, "DEV1").await.unwrap(), None);
    assert_eq!(store.find_access_token("t1").await.unwrap(), None);
    assert!(store.find_access_token("t2").await.unwrap().is_some());
    assert!(
        store.find_access_token("c1").await.unwrap().is_some(),
        "another user's device of the same ID stays"
    );
    store
        .delete_devices(&alice, &[device("NOPE")])
        .await
        .unwrap();

    store
        .delete_all_devices(&alice, Some("DEV3"))
        .await
        .unwrap();
    let remaining: Vec<_> = store
        .list_devices(&alice)
        .await
        .unwrap()
        .into_iter()
        .map(|d| d.device_id)
        .collect();
    assert_eq!(remaining, [device("DEV3")]);
    assert_eq!(store.find_access_token("t2").await.unwrap(), None);
    assert!(store.find_access_token("t3").await.unwrap().is_some());

    store.delete_all_devices(&alice, None).await.unwrap();
    assert!(store.list_devices(&alice).await.unwrap().is_empty());
    assert_eq!(store.find_access_token("t3").await.unwrap(), None);
    assert_eq!(store.list_devices(&carol).await.unwrap().len(), 1);
    assert!(store.find_access_token("c1").await.unwrap().is_some());
}

// ---- rooms ------------------------------------------------------------------------------------

pub async fn events_state_and_snapshots(store: &dyn Storage) {
    let start = store.current_stream_pos().await.unwrap();
    let room_id = "!r:localhost";
    let alice = "@alice:localhost";
    let mut r = TestRoom::create(store, room_id, alice, "r").await;

    let info = store
        .room_info(&r.room_id)
        .await
        .unwrap()
        .expect("room exists");
    assert_eq!(info.room_id, r.room_id);
    assert_eq!(info.version, RoomVersionId::V10);
    assert_eq!(info.creator, user(alice));
    assert_eq!(
        store.room_info(&room("!other:localhost")).await.unwrap(),
        None
    );

    let create_id = event("$rcreate");
    let create = store
        .get_event(&create_id)
        .await
        .unwrap()
        .expect("create event stored");
    let after_create = create.state_snapshot;
    assert!(create.stream_pos > start);
    assert_eq!(
        store.state_at_snapshot(after_create).await.unwrap(),
        StateMap::from([(key("m.room.create", ""), create_id.clone())])
    );

    let (pl_id, pl) = r
        .state_event(
            store,
            "m.room.power_levels",
            "",
            json!({"users": {alice: 100}}),
        )
        .await;
    assert_eq!(store.current_stream_pos().await.unwrap(), pl.stream_pos);

    let msg_pdu = r.next_pdu(
        alice,
        "m.room.message",
        None,
        json!({"msgtype": "m.text", "body": "hello"}),
    );
    let msg_id = msg_pdu.event_id.clone();
    let original_json: Value = serde_json::from_str(msg_pdu.json.get()).unwrap();
    let mut new_event = r.new_event(msg_pdu);
    new_event.txn = Some((device("DEV1"), "txn1".into()));
    let msg = r.append(store, new_event).await;
    assert!(msg.stream_pos > pl.stream_pos, "positions increase");
    assert_eq!(
        msg.state_snapshot, pl.state_snapshot,
        "NewState::Same reuses the snapshot"
    );
    assert_eq!(store.current_stream_pos().await.unwrap(), msg.stream_pos);

    let expected_state = StateMap::from([
        (key("m.room.create", ""), create_id.clone()),
        (key("m.room.member", alice), event("$r1")),
        (key("m.room.power_levels", ""), pl_id.clone()),
    ]);
    assert_eq!(r.state, expected_state);
    assert_eq!(
        store.current_state(&r.room_id).await.unwrap(),
        expected_state
    );
    assert_eq!(
        store.state_at_snapshot(pl.state_snapshot).await.unwrap(),
        expected_state
    );
    let member = store.get_event(&event("$r1")).await.unwrap().unwrap();
    assert_eq!(
        store
            .state_at_snapshot(member.state_snapshot)
            .await
            .unwrap(),
        StateMap::from([
            (key("m.room.create", ""), create_id.clone()),
            (key("m.room.member", alice), event("$r1"))
        ])
    );
    assert!(store
        .current_state(&room("!other:localhost"))
        .await
        .unwrap()
        .is_empty());
    assert_eq!(
        store.forward_extremities(&r.room_id).await.unwrap(),
        std::slice::from_ref(&msg_id)
    );

    let record = store
        .get_event(&msg_id)
        .await
        .unwrap()
        .expect("message stored");
    assert_eq!(record.pdu.event_id, msg_id);
    assert_eq!(record.pdu.room_id, r.room_id);
    assert_eq!(record.pdu.sender, user(alice));
    assert_eq!(record.pdu.kind.to_string(), "m.room.message");
    assert_eq!(record.pdu.prev_events, std::slice::from_ref(&pl_id));
    assert!(!record.pdu.rejected);
    assert_eq!(
        serde_json::from_str::<Value>(record.pdu.json.get()).unwrap(),
        original_json,
        "JSON kept"
    );
    assert_eq!(record.stream_pos, msg.stream_pos);
    assert_eq!(record.state_snapshot, msg.state_snapshot);
    assert_eq!(record.txn, Some((device("DEV1"), "txn1".to_owned())));
    assert_eq!(record.redacted_by, None);
    let pl_record = store.get_event(&pl_id).await.unwrap().unwrap();
    assert_eq!(pl_record.pdu.state_key.as_deref(), Some(""));
    assert_eq!(pl_record.txn, None);
    assert!(store.get_event(&event("$unknown")).await.unwrap().is_none());

    let found = store
        .get_events(&[create_id.clone(), msg_id.clone(), event("$unknown")])
        .await
        .unwrap();
    let found: BTreeSet<_> = ids(&found).into_iter().collect();
    assert_eq!(found, BTreeSet::from([create_id, msg_id]));
    assert!(store.get_events(&[]).await.unwrap().is_empty());

    // A fork: extremities are replaced by whatever the caller says.
    let side = pdu(
        "$side",
        room_id,
        alice,
        "m.room.message",
        None,
        json!({"body": "side"}),
        3,
        std::slice::from_ref(&pl_id),
    );
    let mut side_event = r.new_event(side);
    side_event.forward_extremities = vec![r.last.clone(), event("$side")];
    store.persist_event(side_event).await.unwrap();
    let extremities: BTreeSet<_> = store
        .forward_extremities(&r.room_id)
        .await
        .unwrap()
        .into_iter()
        .collect();
    assert_eq!(
        extremities,
        BTreeSet::from([r.last.clone(), event("$side")])
    );
}

pub async fn snapshot_chains(store: &dyn Storage) {
    let alice = "@alice:localhost";
    let mut r = TestRoom::create(store, "!chain:localhost", alice, "c").await;
    let mut expected: Vec<(SnapshotId, StateMap)> = vec![(r.snapshot, r.state.clone())];
    // Long enough to cross any sensible delta-chain limit several times.
    for i in 0..130 {
        r.state_event(store, "m.test", &format!("k{}", i % 7), json!({"i": i}))
            .await;
        expected.push((r.snapshot, r.state.clone()));
    }
    for (snapshot, state) in &expected {
        assert_eq!(
            &store.state_at_snapshot(*snapshot).await.unwrap(),
            state,
            "snapshot {snapshot}"
        );
        // A few keys, looked up alone, agree with the whole state; absent keys are left out.
        let keys = [
            key("m.test", "k0"),
            key("m.test", "k6"),
            key("m.room.create", ""),
            key("m.absent", ""),
        ];
        let wanted: StateMap = state
            .iter()
            .filter(|(k, _)| keys.contains(k))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        assert_eq!(
            store.state_entries_at(*snapshot, &keys).await.unwrap(),
            wanted,
            "entries of snapshot {snapshot}"
        );
    }
    assert_eq!(store.current_state(&r.room_id).await.unwrap(), r.state);

    // A snapshot based on an old one, off the current state.
    let (old_snapshot, old_state) = expected[3].clone();
    let branch = pdu(
        "$branch",
        r.room_id.as_str(),
        alice,
        "m.room.topic",
        Some(""),
        json!({"topic": "t"}),
        5,
        &[],
    );
    let persisted = store
        .persist_event(NewEvent {
            pdu: branch,
            room: None,
            state: NewState::Changed {
                base: Some(old_snapshot),
                changes: vec![
                    (key("m.room.topic", ""), event("$branch")),
                    (key("m.test", "k0"), event("$branch")),
                ],
            },
            updates_current_state: false,
            membership: None,
            txn: None,
            redaction: None,
            forward_extremities: vec![r.last.clone(), event("$branch")],
            resolved_current_state: None,
            destinations: Vec::new(),
        })
        .await
        .unwrap();
    let mut branch_state = old_state;
    branch_state.insert(key("m.room.topic", ""), event("$branch"));
    branch_state.insert(key("m.test", "k0"), event("$branch"));
    assert_eq!(
        store
            .state_at_snapshot(persisted.state_snapshot)
            .await
            .unwrap(),
        branch_state
    );
    assert_eq!(
        store.current_state(&r.room_id).await.unwrap(),
        r.state,
        "updates_current_state = false"
    );
    for (snapshot, state) in expected.iter().rev().take(3) {
        assert_eq!(
            &store.state_at_snapshot(*snapshot).await.unwrap(),
            state,
            "older snapshots are untouched"
        );
    }

    // A snapshot built from nothing.
    let lone = pdu(
        "$lone",
        r.room_id.as_str(),
        alice,
        "m.room.name",
        Some(""),
        json!({"name": "n"}),
        6,
        &[],
    );
    let persisted = store
        .persist_event(NewEvent {
            pdu: lone,
            room: None,
            state: NewState::Changed {
                base: None,
                changes: vec![(key("m.room.name", ""), event("$lone"))],
            },
            updates_current_state: false,
            membership: None,
            txn: None,
            redaction: None,
            forward_extremities: vec![r.last.clone()],
            resolved_current_state: None,
            destinations: Vec::new(),
        })
        .await
        .unwrap();
    assert_eq!(
        store
            .state_at_snapshot(persisted.state_snapshot)
            .await
            .unwrap(),
        StateMap::from([(key("m.room.name", ""), event("$lone"))])
    );
}

pub async fn current_state_follows_snapshot(store: &dyn Storage) {
    let alice = "@alice:localhost";
    let bob = "@bob:localhost";
    let mut r = TestRoom::create(store, "!cs:localhost", alice, "s").await;
    r.member(store, bob, bob, "join").await;
    let base_state = r.state.clone();
    let base_snapshot = r.snapshot;

    // A state event that does not move the current state (e.g. on a side branch).
    let topic = r.next_pdu(alice, "m.room.topic", Some(""), json!({"topic": "side"}));
    let topic_id = topic.event_id.clone();
    let mut side = r.new_event(topic);
    side.updates_current_state = false;
    let side = store.persist_event(side).await.unwrap();
    assert_eq!(store.current_state(&r.room_id).await.unwrap(), base_state);

    // A later event whose (resolved) state is that branch: the current state moves to it.
    let merge = pdu(
        "$smerge",
        r.room_id.as_str(),
        alice,
        "m.room.message",
        None,
        json!({"body": "m"}),
        10,
        &[],
    );
    let merged = store
        .persist_event(NewEvent {
            pdu: merge,
            room: None,
            state: NewState::Same(side.state_snapshot),
            updates_current_state: true,
            membership: None,
            txn: None,
            redaction: None,
            forward_extremities: vec![event("$smerge")],
            resolved_current_state: None,
            destinations: Vec::new(),
        })
        .await
        .unwrap();
    let mut with_topic = base_state.clone();
    with_topic.insert(key("m.room.topic", ""), topic_id.clone());
    assert_eq!(store.current_state(&r.room_id).await.unwrap(), with_topic);
    r.snapshot = merged.state_snapshot;
    r.state = with_topic.clone();
    r.last = event("$smerge");

    // A rejected event changes neither the current state nor memberships.
    let mut bad = r.next_pdu(
        bob,
        "m.room.member",
        Some(alice),
        json!({"membership": "ban"}),
    );
    bad.rejected = true;
    let bad_id = bad.event_id.clone();
    let mut rejected = r.new_event(bad);
    rejected.membership = Some(MembershipChange {
        user_id: user(alice),
        membership: "ban".into(),
    });
    let rejected = store.persist_event(rejected).await.unwrap();
    assert!(rejected.stream_pos > merged.stream_pos);
    assert_eq!(store.current_state(&r.room_id).await.unwrap(), with_topic);
    let alice_membership = store
        .room_members(&r.room_id)
        .await
        .unwrap()
        .into_iter()
        .find(|m| m.user_id == user(alice))
        .expect("alice is a member");
    assert_eq!(alice_membership.membership, "join");
    let stored = store
        .get_event(&bad_id)
        .await
        .unwrap()
        .expect("rejected events are stored");
    assert!(stored.pdu.rejected);

    // Moving to a snapshot with fewer keys removes the others from the current state.
    let reset = pdu(
        "$sreset",
        r.room_id.as_str(),
        alice,
        "m.room.message",
        None,
        json!({"body": "r"}),
        11,
        &[],
    );
    store
        .persist_event(NewEvent {
            pdu: reset,
            room: None,
            state: NewState::Same(base_snapshot),
            updates_current_state: true,
            membership: None,
            txn: None,
            redaction: None,
            forward_extremities: vec![event("$sreset")],
            resolved_current_state: None,
            destinations: Vec::new(),
        })
        .await
        .unwrap();
    assert_eq!(store.current_state(&r.room_id).await.unwrap(), base_state);
}

pub async fn redactions(store: &dyn Storage) {
    let alice = "@alice:localhost";
    let mut r = TestRoom::create(store, "!red:localhost", alice, "x").await;
    let (target, _) = r.message(store, alice, "secret").await;
    let target_record = store.get_event(&target).await.unwrap().unwrap();
    let mut redacted: Value = serde_json::from_str(target_record.pdu.json.get()).unwrap();
    redacted["content"] = json!({});
    let redacted = serde_json::value::to_raw_value(&redacted).unwrap();

    let redaction = r.next_pdu(
        alice,
        "m.room.redaction",
        None,
        json!({"redacts": target.as_str()}),
    );
    let redaction_id = redaction.event_id.clone();
    let mut new_event = r.new_event(redaction);
    new_event.redaction = Some((target.clone(), redacted));
    r.append(store, new_event).await;

    let after = store.get_event(&target).await.unwrap().unwrap();
    assert_eq!(after.redacted_by, Some(redaction_id.clone()));
    assert_eq!(after.pdu.content_value(), json!({}));
    assert!(!after.pdu.json.get().contains("secret"));
    assert_eq!(
        after.stream_pos, target_record.stream_pos,
        "redaction keeps the target's place"
    );
    let redaction = store.get_event(&redaction_id).await.unwrap().unwrap();
    assert_eq!(redaction.pdu.redacts, Some(target.clone()));
    assert_eq!(redaction.redacted_by, None);

    // Redacting an event we do not have is not an error.
    let blind = r.next_pdu(
        alice,
        "m.room.redaction",
        None,
        json!({"redacts": "$missing"}),
    );
    let blind_id = blind.event_id.clone();
    let mut new_event = r.new_event(blind);
    new_event.redaction = Some((
        event("$missing"),
        serde_json::value::to_raw_value(&json!({})).unwrap(),
    ));
    r.append(store, new_event).await;
    assert!(store.get_event(&blind_id).await.unwrap().is_some());
    assert!(store.get_event(&event("$missing")).await.unwrap().is_none());
}

pub async fn rooms_with_new_events(store: &dyn Storage) {
    let alice = "@alice:localhost";
    let mut a = TestRoom::create(store, "!ra:localhost", alice, "ra").await;
    let mut b = TestRoom::create(store, "!rb:localhost", alice, "rb").await;
    let start = store.current_stream_pos().await.unwrap();
    let sorted = |mut v: Vec<OwnedRoomId>| {
        v.sort();
        v
    };
    assert_eq!(
        store.rooms_with_events_between(start, start).await.unwrap(),
        Vec::<OwnedRoomId>::new()
    );
    let (_, in_a) = a.message(store, alice, "one").await;
    let after_a = store.current_stream_pos().await.unwrap();
    assert_eq!(
        store
            .rooms_with_events_between(start, after_a)
            .await
            .unwrap(),
        vec![a.room_id.clone()]
    );
    a.message(store, alice, "two").await;
    b.message(store, alice, "three").await;
    let now = store.current_stream_pos().await.unwrap();
    assert_eq!(
        sorted(store.rooms_with_events_between(start, now).await.unwrap()),
        sorted(vec![a.room_id.clone(), b.room_id.clone()]),
        "each room once"
    );
    // The lower bound is exclusive, the upper inclusive.
    assert_eq!(
        store
            .rooms_with_events_between(in_a.stream_pos, in_a.stream_pos)
            .await
            .unwrap(),
        Vec::<OwnedRoomId>::new()
    );
    assert_eq!(
        store
            .rooms_with_events_between(StreamPos(in_a.stream_pos.0 - 1), in_a.stream_pos)
            .await
            .unwrap(),
        vec![a.room_id.clone()]
    );
}

pub async fn room_events_pagination(store: &dyn Storage) {
    let alice = "@alice:localhost";
    let mut a = TestRoom::create(store, "!a:localhost", alice, "a").await;
    let mut b = TestRoom::create(store, "!b:localhost", alice, "b").await;
    let mut msgs: Vec<(OwnedEventId, StreamPos)> = Vec::new();
    for i in 0..10 {
        let (id, p) = a.message(store, alice, &format!("a{i}")).await;
        msgs.push((id, p.stream_pos));
        if i % 2 == 0 {
            b.message(store, alice, &format!("b{i}")).await;
        }
    }
    let now = store.current_stream_pos().await.unwrap();
    let msg_ids = |range: std::ops::Range<usize>| -> Vec<OwnedEventId> {
        msgs[range].iter().map(|(id, _)| id.clone()).collect()
    };
    let rev = |mut v: Vec<OwnedEventId>| {
        v.reverse();
        v
    };

    let all = store
        .room_events(&a.room_id, now, None, Direction::Backward, 100)
        .await
        .unwrap();
    assert_eq!(all.len(), 12, "create, join and 10 messages");
    assert!(all.iter().all(|e| e.pdu.room_id == a.room_id));
    assert!(
        all.windows(2).all(|w| w[0].stream_pos > w[1].stream_pos),
        "newest first"
    );
    assert_eq!(ids(&all[..10]), rev(msg_ids(0..10)));
    assert_eq!(ids(&all[10..]), [event("$a1"), event("$acreate")]);

    let page = store
        .room_events(&a.room_id, now, None, Direction::Backward, 3)
        .await
        .unwrap();
    assert_eq!(ids(&page), rev(msg_ids(7..10)));
    let page = store
        .room_events(&a.room_id, msgs[5].1, None, Direction::Backward, 2)
        .await
        .unwrap();
    assert_eq!(ids(&page), rev(msg_ids(4..6)), "backward includes `from`");
    let page = store
        .room_events(
            &a.room_id,
            msgs[8].1,
            Some(msgs[5].1),
            Direction::Backward,
            100,
        )
        .await
        .unwrap();
    assert_eq!(ids(&page), rev(msg_ids(6..9)), "backward excludes `to`");

    let page = store
        .room_events(&a.room_id, msgs[2].1, None, Direction::Forward, 3)
        .await
        .unwrap();
    assert_eq!(
        ids(&page),
        msg_ids(3..6),
        "forward excludes `from`, oldest first"
    );
    let page = store
        .room_events(
            &a.room_id,
            msgs[2].1,
            Some(msgs[4].1),
            Direction::Forward,
            100,
        )
        .await
        .unwrap();
    assert_eq!(ids(&page), msg_ids(3..5), "forward includes `to`");
    let page = store
        .room_events(&a.room_id, StreamPos::ZERO, None, Direction::Forward, 2)
        .await
        .unwrap();
    assert_eq!(ids(&page), [event("$acreate"), event("$a1")]);
    assert!(store
        .room_events(&a.room_id, now, None, Direction::Forward, 10)
        .await
        .unwrap()
        .is_empty());
    assert!(store
        .room_events(&a.room_id, now, None, Direction::Backward, 0)
        .await
        .unwrap()
        .is_empty());
    assert!(store
        .room_events(&room("!none:localhost"), now, None, Direction::Backward, 10)
        .await
        .unwrap()
        .is_empty());

    let b_events = store
        .room_events(&b.room_id, now, None, Direction::Backward, 100)
        .await
        .unwrap();
    assert_eq!(b_events.len(), 7);
    assert!(b_events.iter().all(|e| e.pdu.room_id == b.room_id));
}

pub async fn memberships(store: &dyn Storage) {
    let alice = "@alice:localhost";
    let bob = "@bob:localhost";
    let mut r1 = TestRoom::create(store, "!m1:localhost", alice, "m").await;
    let mut r2 = TestRoom::create(store, "!m2:localhost", alice, "n").await;
    let (invite_id, invite) = r1.member(store, alice, bob, "invite").await;
    let r1_id = r1.room_id.clone();
    let bob_in_r1 = move |records: Vec<crate::MembershipRecord>| {
        records
            .into_iter()
            .find(|m| m.room_id == r1_id && m.user_id == user(bob))
            .expect("bob has a membership")
    };
    let m = bob_in_r1(store.memberships_of_user(&user(bob)).await.unwrap());
    assert_eq!(
        (
            m.membership.as_str(),
            &m.event_id,
            m.stream_pos,
            m.forgotten
        ),
        ("invite", &invite_id, invite.stream_pos, false)
    );
    assert_eq!(m.joined_pos, None, "an invitee has never joined");

    let (_, join) = r1.member(store, bob, bob, "join").await;
    let (leave_id, leave) = r1.member(store, bob, bob, "leave").await;
    let m = bob_in_r1(store.room_members(&r1.room_id).await.unwrap());
    assert_eq!(
        (m.membership.as_str(), &m.event_id, m.stream_pos),
        ("leave", &leave_id, leave.stream_pos)
    );
    assert_eq!(
        m.joined_pos,
        Some(join.stream_pos),
        "the last join is kept after leaving"
    );

    store.forget_room(&user(bob), &r1.room_id).await.unwrap();
    assert!(bob_in_r1(store.memberships_of_user(&user(bob)).await.unwrap()).forgotten);
    store
        .forget_room(&user(bob), &room("!unknown:localhost"))
        .await
        .unwrap();

    let (rejoin_id, rejoin) = r1.member(store, bob, bob, "join").await;
    let m = bob_in_r1(store.memberships_of_user(&user(bob)).await.unwrap());
    assert_eq!(
        (
            m.membership.as_str(),
            &m.event_id,
            m.stream_pos,
            m.forgotten
        ),
        ("join", &rejoin_id, rejoin.stream_pos, false)
    );
    assert_eq!(m.joined_pos, Some(rejoin.stream_pos), "a rejoin moves it");

    r2.member(store, alice, bob, "invite").await;
    let mut bob_rooms: Vec<_> = store
        .memberships_of_user(&user(bob))
        .await
        .unwrap()
        .into_iter()
        .map(|m| (m.room_id, m.membership))
        .collect();
    bob_rooms.sort();
    assert_eq!(
        bob_rooms,
        [
            (r1.room_id.clone(), "join".to_owned()),
            (r2.room_id.clone(), "invite".to_owned())
        ]
    );
    let mut alice_rooms: Vec<_> = store
        .memberships_of_user(&user(alice))
        .await
        .unwrap()
        .into_iter()
        .map(|m| m.room_id)
        .collect();
    alice_rooms.sort();
    assert_eq!(alice_rooms, [r1.room_id.clone(), r2.room_id.clone()]);

    let mut members: Vec<_> = store
        .room_members(&r1.room_id)
        .await
        .unwrap()
        .into_iter()
        .map(|m| (m.user_id.to_string(), m.membership))
        .collect();
    members.sort();
    assert_eq!(
        members,
        [
            (alice.to_owned(), "join".to_owned()),
            (bob.to_owned(), "join".to_owned())
        ]
    );
    assert!(store
        .room_members(&room("!unknown:localhost"))
        .await
        .unwrap()
        .is_empty());
    assert!(store
        .memberships_of_user(&user("@nobody:localhost"))
        .await
        .unwrap()
        .is_empty());
}

pub async fn room_directory(store: &dyn Storage) {
    let (r1, r2, r3) = (
        room("!dir1:localhost"),
        room("!dir2:localhost"),
        room("!dir3:localhost"),
    );
    assert!(store.published_rooms().await.unwrap().is_empty());
    assert!(!store.is_room_published(&r1).await.unwrap());

    store.set_room_published(&r2, true).await.unwrap();
    store.set_room_published(&r1, true).await.unwrap();
    store.set_room_published(&r1, true).await.unwrap(); // idempotent
    store.set_room_published(&r3, false).await.unwrap(); // never published: no-op
    assert!(store.is_room_published(&r1).await.unwrap());
    assert!(!store.is_room_published(&r3).await.unwrap());
    assert_eq!(
        store.published_rooms().await.unwrap(),
        [r1.clone(), r2.clone()],
        "ordered by room ID"
    );

    store.set_room_published(&r1, false).await.unwrap();
    assert!(!store.is_room_published(&r1).await.unwrap());
    assert_eq!(
        store.published_rooms().await.unwrap(),
        std::slice::from_ref(&r2)
    );
    store.set_room_published(&r1, true).await.unwrap();
    assert_eq!(store.published_rooms().await.unwrap(), [r1, r2]);
}

pub async fn aliases(store: &dyn Storage) {
    let alice = user("@alice:localhost");
    let (r1, r2) = (room("!al1:localhost"), room("!al2:localhost"));
    let (a, b, c) = (
        alias("#a:localhost"),
        alias("#b:localhost"),
        alias("#c:localhost"),
    );
    assert!(store.create_alias(&a, &r1, &alice).await.unwrap());
    assert!(
        !store
            .create_alias(&a, &r2, &user("@bob:localhost"))
            .await
            .unwrap(),
        "taken"
    );
    assert_eq!(
        store.resolve_alias(&a).await.unwrap(),
        Some((r1.clone(), alice.clone()))
    );
    assert!(store.create_alias(&b, &r1, &alice).await.unwrap());
    assert!(store.create_alias(&c, &r2, &alice).await.unwrap());
    let mut of_r1 = store.aliases_of_room(&r1).await.unwrap();
    of_r1.sort();
    assert_eq!(of_r1, ["#a:localhost", "#b:localhost"]);
    assert_eq!(
        store
            .resolve_alias(&alias("#none:localhost"))
            .await
            .unwrap(),
        None
    );

    assert!(store.delete_alias(&a).await.unwrap());
    assert!(!store.delete_alias(&a).await.unwrap());
    assert_eq!(store.resolve_alias(&a).await.unwrap(), None);
    assert_eq!(store.aliases_of_room(&r1).await.unwrap(), ["#b:localhost"]);
    assert!(
        store.create_alias(&a, &r2, &alice).await.unwrap(),
        "a deleted alias can be reused"
    );
    assert_eq!(
        store.resolve_alias(&a).await.unwrap(),
        Some((r2.clone(), alice.clone()))
    );
    assert!(store
        .aliases_of_room(&room("!none:localhost"))
        .await
        .unwrap()
        .is_empty());
}

pub async fn txn_ids(store: &dyn Storage) {
    let alice = "@alice:localhost";
    let bob = "@bob:localhost";
    let mut r = TestRoom::create(store, "!t:localhost", alice, "t").await;
    let send = |r: &mut TestRoom, sender: &str, dev: &str, txn: &str| {
        let pdu = r.next_pdu(sender, "m.room.message", None, json!({"body": txn}));
        let mut new_event = r.new_event(pdu);
        new_event.txn = Some((device(dev), txn.to_owned()));
        new_event
    };
    let first = send(&mut r, alice, "DEV1", "t1");
    let first_id = first.pdu.event_id.clone();
    r.append(store, first).await;
    let same_txn_other_device = send(&mut r, alice, "DEV2", "t1");
    let second_id = same_txn_other_device.pdu.event_id.clone();
    r.append(store, same_txn_other_device).await;
    let other_user = send(&mut r, bob, "DEV1", "t1");
    let third_id = other_user.pdu.event_id.clone();
    r.append(store, other_user).await;

    let (alice_id, bob_id) = (user(alice), user(bob));
    assert_eq!(
        store.event_for_txn(&alice_id, "DEV1", "t1").await.unwrap(),
        Some(first_id.clone())
    );
    assert_eq!(
        store.event_for_txn(&alice_id, "DEV2", "t1").await.unwrap(),
        Some(second_id)
    );
    assert_eq!(
        store.event_for_txn(&bob_id, "DEV1", "t1").await.unwrap(),
        Some(third_id)
    );
    assert_eq!(
        store.event_for_txn(&alice_id, "DEV1", "t2").await.unwrap(),
        None
    );
    assert_eq!(
        store.event_for_txn(&alice_id, "DEV3", "t1").await.unwrap(),
        None
    );
    assert_eq!(
        store
            .event_for_txn(&user("@carol:localhost"), "DEV1", "t1")
            .await
            .unwrap(),
        None
    );
    let record = store.get_event(&first_id).await.unwrap().unwrap();
    assert_eq!(record.txn, Some((device("DEV1"), "t1".to_owned())));
}

// ---- per-user data ----------------------------------------------------------------------------

pub async fn account_data(store: &dyn Storage) {
    let alice = user("@alice:localhost");
    let bob = user("@bob:localhost");
    let r = room("!ad:localhost");
    let start = store.current_stream_pos().await.unwrap();

    let p1 = store
        .set_account_data(&alice, None, "m.push_rules", &json!({"global": {}}))
        .await
        .unwrap();
    let p2 = store
        .set_account_data(&alice, Some(&r), "m.tag", &json!({"tags": {"u.x": {}}}))
        .await
        .unwrap();
    assert!(start < p1 && p1 < p2);
    assert_eq!(store.current_stream_pos().await.unwrap(), p2);
    store
        .set_account_data(&bob, None, "m.push_rules", &json!({"bob": true}))
        .await
        .unwrap();

    assert_eq!(
        store
            .get_account_data(&alice, None, "m.push_rules")
            .await
            .unwrap(),
        Some(json!({"global": {}}))
    );
    assert_eq!(
        store
            .get_account_data(&alice, Some(&r), "m.tag")
            .await
            .unwrap(),
        Some(json!({"tags": {"u.x": {}}}))
    );
    assert_eq!(
        store.get_account_data(&alice, None, "m.tag").await.unwrap(),
        None,
        "global and room data are apart"
    );
    assert_eq!(
        store
            .get_account_data(&alice, Some(&r), "m.push_rules")
            .await
            .unwrap(),
        None
    );
    assert_eq!(
        store
            .get_account_data(&user("@carol:localhost"), None, "m.push_rules")
            .await
            .unwrap(),
        None
    );

    let since = |records: Vec<crate::AccountDataRecord>| {
        let mut v: Vec<_> = records
            .into_iter()
            .map(|r| (r.room_id, r.data_type, r.content, r.stream_pos))
            .collect();
        v.sort_by_key(|r| r.3);
        v
    };
    assert_eq!(
        since(store.account_data_since(&alice, start).await.unwrap()),
        [
            (None, "m.push_rules".to_owned(), json!({"global": {}}), p1),
            (
                Some(r.clone()),
                "m.tag".to_owned(),
                json!({"tags": {"u.x": {}}}),
                p2
            ),
        ]
    );
    assert_eq!(
        since(store.account_data_since(&alice, p1).await.unwrap()),
        [(
            Some(r.clone()),
            "m.tag".to_owned(),
            json!({"tags": {"u.x": {}}}),
            p2
        )]
    );

    let p3 = store
        .set_account_data(&alice, None, "m.push_rules", &json!({"v": 2}))
        .await
        .unwrap();
    assert!(p3 > p2);
    assert_eq!(
        since(store.account_data_since(&alice, p2).await.unwrap()),
        [(None, "m.push_rules".to_owned(), json!({"v": 2}), p3)]
    );
    assert_eq!(
        store.account_data_since(&alice, start).await.unwrap().len(),
        2,
        "overwrites replace"
    );
    assert!(store
        .account_data_since(&alice, p3)
        .await
        .unwrap()
        .is_empty());

    // Setting `{}` (deletion) is still a change that `since` reports.
    let p4 = store
        .set_account_data(&alice, Some(&r), "m.tag", &json!({}))
        .await
        .unwrap();
    assert_eq!(
        since(store.account_data_since(&alice, p3).await.unwrap()),
        [(Some(r.clone()), "m.tag".to_owned(), json!({}), p4)]
    );
    let after_delete = store
        .get_account_data(&alice, Some(&r), "m.tag")
        .await
        .unwrap();
    assert!(
        after_delete.is_none() || after_delete == Some(json!({})),
        "got {after_delete:?}"
    );
}

pub async fn receipts(store: &dyn Storage) {
    let alice = user("@alice:localhost");
    let bob = user("@bob:localhost");
    let (r1, r2) = (room("!rc1:localhost"), room("!rc2:localhost"));
    let start = store.current_stream_pos().await.unwrap();
    let receipt = |room_id: &OwnedRoomId,
                   receipt_type: &str,
                   user_id: &OwnedUserId,
                   thread: Option<&str>,
                   event_id: &str,
                   ts| {
        ReceiptRecord {
            room_id: room_id.clone(),
            receipt_type: receipt_type.to_owned(),
            user_id: user_id.clone(),
            thread_id: thread.map(str::to_owned),
            event_id: event(event_id),
            ts,
            stream_pos: StreamPos::ZERO,
        }
    };
    let p1 = store
        .set_receipt(receipt(&r1, "m.read", &alice, None, "$e1", 10))
        .await
        .unwrap();
    let p2 = store
        .set_receipt(receipt(&r1, "m.read", &alice, Some("main"), "$e2", 20))
        .await
        .unwrap();
    let p3 = store
        .set_receipt(receipt(&r1, "m.read.private", &alice, None, "$e2", 30))
        .await
        .unwrap();
    let p4 = store
        .set_receipt(receipt(&r2, "m.read", &alice, None, "$f1", 40))
        .await
        .unwrap();
    let p5 = store
        .set_receipt(receipt(&r1, "m.read", &bob, None, "$e1", 50))
        .await
        .unwrap();
    let p6 = store
        .set_receipt(receipt(&r1, "m.read", &alice, None, "$e3", 60))
        .await
        .unwrap();
    let positions = [start, p1, p2, p3, p4, p5, p6];
    assert!(positions.windows(2).all(|w| w[0] < w[1]), "{positions:?}");
    assert_eq!(store.current_stream_pos().await.unwrap(), p6);

    let sorted = |mut v: Vec<ReceiptRecord>| {
        v.sort_by_key(|r| r.stream_pos);
        v
    };
    let with_pos = |mut r: ReceiptRecord, pos| {
        r.stream_pos = pos;
        r
    };
    assert_eq!(
        sorted(
            store
                .receipts_since(std::slice::from_ref(&r1), start)
                .await
                .unwrap()
        ),
        [
            with_pos(receipt(&r1, "m.read", &alice, Some("main"), "$e2", 20), p2),
            with_pos(receipt(&r1, "m.read.private", &alice, None, "$e2", 30), p3),
            with_pos(receipt(&r1, "m.read", &bob, None, "$e1", 50), p5),
            with_pos(receipt(&r1, "m.read", &alice, None, "$e3", 60), p6),
        ],
        "the unthreaded m.read of alice was replaced"
    );
    assert_eq!(
        sorted(
            store
                .receipts_since(&[r1.clone(), r2.clone()], p3)
                .await
                .unwrap()
        ),
        [
            with_pos(receipt(&r2, "m.read", &alice, None, "$f1", 40), p4),
            with_pos(receipt(&r1, "m.read", &bob, None, "$e1", 50), p5),
            with_pos(receipt(&r1, "m.read", &alice, None, "$e3", 60), p6),
        ]
    );
    assert!(store
        .receipts_since(&[r1.clone(), r2.clone()], p6)
        .await
        .unwrap()
        .is_empty());
    assert!(store.receipts_since(&[], start).await.unwrap().is_empty());
    assert!(store
        .receipts_since(&[room("!none:localhost")], start)
        .await
        .unwrap()
        .is_empty());
}

pub async fn presence(store: &dyn Storage) {
    let (alice, bob, carol) = (
        user("@alice:localhost"),
        user("@bob:localhost"),
        user("@carol:localhost"),
    );
    let start = store.current_stream_pos().await.unwrap();
    assert_eq!(store.get_presence(&alice).await.unwrap(), None);
    let p1 = store
        .set_presence(&alice, "online", Some("hi"), 1_000)
        .await
        .unwrap();
    assert!(p1 > start);
    let got = store.get_presence(&alice).await.unwrap().unwrap();
    assert_eq!(
        (
            got.user_id,
            got.state.as_str(),
            got.status_msg.as_deref(),
            got.last_active_ms,
            got.stream_pos
        ),
        (alice.clone(), "online", Some("hi"), 1_000, p1)
    );
    let p2 = store
        .set_presence(&alice, "unavailable", None, 2_000)
        .await
        .unwrap();
    let p3 = store
        .set_presence(&bob, "offline", None, 3_000)
        .await
        .unwrap();
    assert!(p1 < p2 && p2 < p3);
    assert_eq!(store.current_stream_pos().await.unwrap(), p3);
    let got = store.get_presence(&alice).await.unwrap().unwrap();
    assert_eq!(
        (
            got.state.as_str(),
            got.status_msg,
            got.last_active_ms,
            got.stream_pos
        ),
        ("unavailable", None, 2_000, p2)
    );

    let mut since: Vec<_> = store
        .presence_since(&[alice.clone(), bob.clone(), carol.clone()], p1)
        .await
        .unwrap()
        .into_iter()
        .map(|p| (p.user_id, p.stream_pos))
        .collect();
    since.sort_by_key(|p| p.1);
    assert_eq!(since, [(alice.clone(), p2), (bob.clone(), p3)]);
    assert!(store
        .presence_since(std::slice::from_ref(&alice), p2)
        .await
        .unwrap()
        .is_empty());
    assert_eq!(
        store
            .presence_since(std::slice::from_ref(&bob), start)
            .await
            .unwrap()
            .len(),
        1
    );
    assert!(store
        .presence_since(&[carol], start)
        .await
        .unwrap()
        .is_empty());
    assert!(store.presence_since(&[], start).await.unwrap().is_empty());
}

pub async fn filters(store: &dyn Storage) {
    let (alice, bob) = (user("@alice:localhost"), user("@bob:localhost"));
    let f1 = json!({"room": {"timeline": {"limit": 10}}});
    let f2 = json!({"presence": {"not_types": ["*"]}});
    let id1 = store.create_filter(&alice, &f1).await.unwrap();
    let id2 = store.create_filter(&alice, &f2).await.unwrap();
    assert_ne!(id1, id2);
    for id in [&id1, &id2] {
        assert!(
            !id.is_empty() && id.chars().all(|c| c.is_ascii_digit()),
            "decimal filter ID: {id}"
        );
    }
    assert_eq!(
        store.get_filter(&alice, &id1).await.unwrap(),
        Some(f1.clone())
    );
    assert_eq!(
        store.get_filter(&alice, &id2).await.unwrap(),
        Some(f2.clone())
    );
    assert_eq!(
        store.get_filter(&bob, &id1).await.unwrap(),
        None,
        "filters are per user"
    );
    assert_eq!(
        store.get_filter(&alice, "not-a-number").await.unwrap(),
        None
    );
    assert_eq!(store.get_filter(&alice, "99999999").await.unwrap(), None);
    assert_eq!(store.get_filter(&alice, "").await.unwrap(), None);
    let bob_id = store.create_filter(&bob, &json!({"bob": 1})).await.unwrap();
    assert_eq!(
        store.get_filter(&bob, &bob_id).await.unwrap(),
        Some(json!({"bob": 1}))
    );
    assert_eq!(
        store.get_filter(&alice, &id1).await.unwrap(),
        Some(f1),
        "bob's filter did not overwrite alice's"
    );
}

// ---- federation -------------------------------------------------------------------------------

fn outlier(pdu: &Pdu, status: OutlierStatus) -> NewOutlier {
    NewOutlier {
        pdu: pdu.clone(),
        status,
    }
}

/// Outliers are returned by ID with their status but take no stream position and never show in
/// a timeline; one already stored is skipped; a timeline event with an outlier's ID replaces it.
pub async fn outliers_stay_out_of_the_timeline(store: &dyn Storage) {
    let alice = "@alice:localhost";
    let remote = "@bob:remote.example";
    let room_id = "!out:localhost";
    let mut r = TestRoom::create(store, room_id, alice, "tl").await;
    let start = store.current_stream_pos().await.unwrap();

    let auth = pdu(
        "$outauth",
        room_id,
        remote,
        "m.room.member",
        Some(remote),
        json!({"membership": "join"}),
        2,
        &[],
    );
    let bad = pdu(
        "$outbad",
        room_id,
        remote,
        "m.room.power_levels",
        Some(""),
        json!({"users": {remote: 100}}),
        3,
        &[],
    );
    let soft = pdu(
        "$outsoft",
        room_id,
        remote,
        "m.room.message",
        None,
        json!({"body": "soft"}),
        4,
        &[],
    );
    let persisted = store
        .persist_with_outliers(
            vec![
                outlier(&auth, OutlierStatus::Outlier),
                outlier(&bad, OutlierStatus::Rejected),
                outlier(&soft, OutlierStatus::SoftFailed),
                // The same event twice in one call: the first is stored, the second skipped.
                outlier(&soft, OutlierStatus::Rejected),
            ],
            Vec::new(),
        )
        .await
        .unwrap();
    assert!(persisted.is_empty());
    assert_eq!(
        store.current_stream_pos().await.unwrap(),
        start,
        "outliers take no stream position"
    );

    for (stored, status) in [
        (&auth, OutlierStatus::Outlier),
        (&bad, OutlierStatus::Rejected),
        (&soft, OutlierStatus::SoftFailed),
    ] {
        let id = &stored.event_id;
        let record = store
            .get_event(id)
            .await
            .unwrap()
            .expect("outliers are found by ID");
        assert_eq!(record.outlier, Some(status), "{id}");
        assert_eq!(record.stream_pos, StreamPos::ZERO, "{id}");
        assert_eq!(record.state_snapshot, 0, "{id}");
        assert_eq!(record.txn, None, "{id}");
        assert_eq!(record.redacted_by, None, "{id}");
        assert_eq!(
            record.pdu.rejected,
            status == OutlierStatus::Rejected,
            "{id}"
        );
        assert_eq!(record.pdu.room_id, r.room_id);
        assert_eq!(
            serde_json::from_str::<Value>(record.pdu.json.get()).unwrap(),
            serde_json::from_str::<Value>(stored.json.get()).unwrap(),
            "JSON kept"
        );
    }
    let found: BTreeMap<_, _> = store
        .get_events(&[
            auth.event_id.clone(),
            bad.event_id.clone(),
            r.last.clone(),
            event("$outunknown"),
        ])
        .await
        .unwrap()
        .into_iter()
        .map(|e| (e.pdu.event_id, e.outlier))
        .collect();
    assert_eq!(
        found,
        BTreeMap::from([
            (auth.event_id.clone(), Some(OutlierStatus::Outlier)),
            (bad.event_id.clone(), Some(OutlierStatus::Rejected)),
            (r.last.clone(), None),
        ])
    );

    let now = store.current_stream_pos().await.unwrap();
    let timeline: BTreeSet<_> = ids(&store
        .room_events(&r.room_id, now, None, Direction::Backward, 100)
        .await
        .unwrap())
    .into_iter()
    .collect();
    for outlier in [&auth, &bad, &soft] {
        assert!(
            !timeline.contains(&outlier.event_id),
            "outliers are not in the timeline"
        );
    }
    assert_eq!(
        store.rooms_with_events_between(start, now).await.unwrap(),
        Vec::<OwnedRoomId>::new()
    );

    // Stored already, in either place: skipped.
    let last = store.get_event(&r.last).await.unwrap().unwrap();
    store
        .persist_with_outliers(
            vec![
                outlier(&auth, OutlierStatus::Rejected),
                outlier(&last.pdu, OutlierStatus::Outlier),
            ],
            Vec::new(),
        )
        .await
        .unwrap();
    assert_eq!(
        store
            .get_event(&auth.event_id)
            .await
            .unwrap()
            .unwrap()
            .outlier,
        Some(OutlierStatus::Outlier),
        "the first status stays"
    );
    let still = store.get_event(&r.last).await.unwrap().unwrap();
    assert_eq!(
        still.outlier, None,
        "a timeline event stays in the timeline"
    );
    assert_eq!(still.stream_pos, last.stream_pos);

    // An outlier that is later persisted as a timeline event becomes one.
    let late = r.next_pdu(alice, "m.room.message", None, json!({"body": "late"}));
    let late_id = late.event_id.clone();
    store
        .persist_with_outliers(vec![outlier(&late, OutlierStatus::Outlier)], Vec::new())
        .await
        .unwrap();
    let before = store.current_stream_pos().await.unwrap();
    let placed = r.append(store, r.new_event(late)).await;
    let record = store.get_event(&late_id).await.unwrap().unwrap();
    assert_eq!(record.outlier, None);
    assert_eq!(record.stream_pos, placed.stream_pos);
    assert_eq!(record.state_snapshot, placed.state_snapshot);
    assert_eq!(
        store
            .get_events(std::slice::from_ref(&late_id))
            .await
            .unwrap()
            .len(),
        1,
        "found once"
    );
    assert_eq!(
        ids(&store
            .room_events(
                &r.room_id,
                placed.stream_pos,
                Some(before),
                Direction::Backward,
                10
            )
            .await
            .unwrap()),
        std::slice::from_ref(&late_id)
    );
    assert_eq!(
        store
            .rooms_with_events_between(before, placed.stream_pos)
            .await
            .unwrap(),
        std::slice::from_ref(&r.room_id)
    );

    // Outliers and timeline events in one call (a join over federation); an event of the batch
    // that is also among the outliers ends in the timeline.
    let state = pdu(
        "$outstate",
        room_id,
        remote,
        "m.room.topic",
        Some(""),
        json!({"topic": "remote"}),
        2,
        &[],
    );
    let join = r.next_pdu(alice, "m.room.message", None, json!({"body": "joined"}));
    let join_id = join.event_id.clone();
    let persisted = store
        .persist_with_outliers(
            vec![
                outlier(&state, OutlierStatus::Outlier),
                outlier(&join, OutlierStatus::Outlier),
            ],
            vec![r.new_event(join)],
        )
        .await
        .unwrap();
    assert_eq!(persisted.len(), 1);
    assert_eq!(
        store.current_stream_pos().await.unwrap(),
        persisted[0].stream_pos
    );
    assert_eq!(
        store
            .get_event(&state.event_id)
            .await
            .unwrap()
            .unwrap()
            .outlier,
        Some(OutlierStatus::Outlier)
    );
    let join = store.get_event(&join_id).await.unwrap().unwrap();
    assert_eq!(join.outlier, None);
    assert_eq!(join.stream_pos, persisted[0].stream_pos);
}

/// History fetched from another server goes below every stored position (newest given first,
/// so the oldest sorts first), is paged backward after everything else, moves neither the
/// stream counter nor current state, extremities or memberships; an event already in the
/// timeline is skipped and an outlier moves into the timeline.
pub async fn backfilled_events_go_before_the_timeline(store: &dyn Storage) {
    let alice = "@alice:localhost";
    let remote = "@bob:remote.example";
    let room_id = "!bf:localhost";
    let mut r = TestRoom::create(store, room_id, alice, "bf").await;
    r.message(store, alice, "newest").await;
    let start = store.current_stream_pos().await.unwrap();
    let timeline_before = ids(&store
        .room_events(&r.room_id, start, None, Direction::Backward, 100)
        .await
        .unwrap());
    let state_before = store.current_state(&r.room_id).await.unwrap();
    let extremities_before = store.forward_extremities(&r.room_id).await.unwrap();
    let members_before = store.room_members(&r.room_id).await.unwrap();

    let old = |id: &str, depth: u64, kind: &str, state_key: Option<&str>| {
        let content = match kind {
            "m.room.member" => json!({"membership": "join"}),
            _ => json!({"body": id}),
        };
        pdu(id, room_id, remote, kind, state_key, content, depth, &[])
    };
    let h1 = old("$bfh1", 1, "m.room.member", Some(remote));
    let h2 = old("$bfh2", 2, "m.room.message", None);
    let h3 = old("$bfh3", 3, "m.room.message", None);
    // Known already as an outlier (e.g. an auth event from a join): it moves into the timeline.
    store
        .persist_with_outliers(vec![outlier(&h2, OutlierStatus::Outlier)], Vec::new())
        .await
        .unwrap();
    let backfilled = |pdu: &Pdu| BackfilledEvent {
        pdu: pdu.clone(),
        state_snapshot: r.snapshot,
    };

    let positions = store
        .persist_backfilled(vec![backfilled(&h3), backfilled(&h2), backfilled(&h1)])
        .await
        .unwrap();
    assert_eq!(
        positions,
        [StreamPos(-1), StreamPos(-2), StreamPos(-3)],
        "negative, going down in the order given"
    );
    assert_eq!(
        store.current_stream_pos().await.unwrap(),
        start,
        "the stream counter does not move"
    );
    assert_eq!(store.current_state(&r.room_id).await.unwrap(), state_before);
    assert_eq!(
        store.forward_extremities(&r.room_id).await.unwrap(),
        extremities_before
    );
    assert_eq!(
        store.room_members(&r.room_id).await.unwrap(),
        members_before
    );
    assert_eq!(
        store.rooms_with_events_between(start, start).await.unwrap(),
        Vec::<OwnedRoomId>::new(),
        "an incremental sync sees nothing new"
    );

    let record = store.get_event(&h2.event_id).await.unwrap().unwrap();
    assert_eq!(record.outlier, None, "the outlier is now in the timeline");
    assert_eq!(record.stream_pos, StreamPos(-2));
    assert_eq!(record.state_snapshot, r.snapshot);
    assert_eq!(
        store
            .get_events(std::slice::from_ref(&h2.event_id))
            .await
            .unwrap()
            .len(),
        1,
        "found once"
    );

    // Backward pagination runs on from the oldest existing event into the backfilled ones.
    let all = store
        .room_events(&r.room_id, start, None, Direction::Backward, 100)
        .await
        .unwrap();
    let mut expected = timeline_before.clone();
    expected.extend([
        h3.event_id.clone(),
        h2.event_id.clone(),
        h1.event_id.clone(),
    ]);
    assert_eq!(ids(&all), expected);
    let oldest_before = all[timeline_before.len() - 1].stream_pos;
    let page = store
        .room_events(
            &r.room_id,
            StreamPos(oldest_before.0 - 1),
            None,
            Direction::Backward,
            2,
        )
        .await
        .unwrap();
    assert_eq!(ids(&page), [h3.event_id.clone(), h2.event_id.clone()]);
    let page = store
        .room_events(
            &r.room_id,
            StreamPos(page[1].stream_pos.0 - 1),
            None,
            Direction::Backward,
            2,
        )
        .await
        .unwrap();
    assert_eq!(ids(&page), std::slice::from_ref(&h1.event_id));
    let page = store
        .room_events(&r.room_id, StreamPos(i64::MIN), None, Direction::Forward, 2)
        .await
        .unwrap();
    assert_eq!(
        ids(&page),
        [h1.event_id.clone(), h2.event_id.clone()],
        "forward from the very start: oldest first"
    );

    // Backfilling the same events again is a no-op; a new one goes below the lowest.
    let again = store
        .persist_backfilled(vec![backfilled(&h3), backfilled(&h1)])
        .await
        .unwrap();
    assert_eq!(again, [StreamPos(-1), StreamPos(-3)], "positions kept");
    let h0 = old("$bfh0", 1, "m.room.message", None);
    assert_eq!(
        store
            .persist_backfilled(vec![backfilled(&h0), backfilled(&h0)])
            .await
            .unwrap(),
        [StreamPos(-4), StreamPos(-4)],
        "twice in one call: stored once"
    );
    expected.push(h0.event_id.clone());
    assert_eq!(
        ids(&store
            .room_events(&r.room_id, start, None, Direction::Backward, 100)
            .await
            .unwrap()),
        expected
    );
    assert_eq!(store.current_stream_pos().await.unwrap(), start);

    // New events still take the next position of the counter.
    let (_, persisted) = r.message(store, alice, "after").await;
    assert_eq!(persisted.stream_pos, StreamPos(start.0 + 1));
    assert_eq!(
        store
            .rooms_with_events_between(start, persisted.stream_pos)
            .await
            .unwrap(),
        std::slice::from_ref(&r.room_id)
    );
}

fn edu(n: u32) -> String {
    json!({"edu_type": "m.typing", "content": {"n": n}}).to_string()
}

fn contents(entries: &[OutboxEntry]) -> Vec<OutboxContent> {
    entries.iter().map(|e| e.content.clone()).collect()
}

async fn destinations(store: &dyn Storage) -> Vec<String> {
    let mut destinations = store.outbox_destinations().await.unwrap();
    destinations.sort();
    destinations
}

/// The outbox: rows written with their event, EDUs, peeking in order within limits, removal and
/// dropping per destination.
pub async fn federation_outbox(store: &dyn Storage) {
    use OutboxContent::{Edu, Pdu};
    let alice = "@alice:localhost";
    let (a, b, c) = ("a.example", "b.example", "c.example");
    let mut r = TestRoom::create(store, "!fo:localhost", alice, "fo").await;
    assert!(store.outbox_destinations().await.unwrap().is_empty());
    assert!(store.outbox_peek(a, 10, 10).await.unwrap().is_empty());

    let first = r.next_pdu(alice, "m.room.message", None, json!({"body": "1"}));
    let first_id = first.event_id.clone();
    let mut new_event = r.new_event(first);
    new_event.destinations = vec![a.to_owned(), b.to_owned()];
    r.append(store, new_event).await;
    store.queue_edu(&[a.to_owned()], edu(1)).await.unwrap();
    let second = r.next_pdu(alice, "m.room.message", None, json!({"body": "2"}));
    let second_id = second.event_id.clone();
    let mut new_event = r.new_event(second);
    new_event.destinations = vec![a.to_owned()];
    r.append(store, new_event).await;
    store
        .queue_edu(&[a.to_owned(), c.to_owned()], edu(2))
        .await
        .unwrap();
    store.queue_edu(&[], edu(3)).await.unwrap();
    assert_eq!(destinations(store).await, [a, b, c]);

    let all = store.outbox_peek(a, 10, 10).await.unwrap();
    assert_eq!(
        contents(&all),
        [
            Pdu(first_id.clone()),
            Edu(edu(1)),
            Pdu(second_id.clone()),
            Edu(edu(2))
        ]
    );
    assert!(all.windows(2).all(|w| w[0].id < w[1].id), "IDs increase");
    assert!(all.iter().all(|e| e.destination == a && e.created_ms > 0));
    assert_eq!(
        contents(&store.outbox_peek(b, 10, 10).await.unwrap()),
        [Pdu(first_id.clone())]
    );
    assert_eq!(
        contents(&store.outbox_peek(c, 10, 10).await.unwrap()),
        [Edu(edu(2))]
    );

    // Limits stop at the first row over either of them: rows are never skipped.
    for (max_pdus, max_edus, expected) in [
        (1, 10, 2),
        (10, 0, 1),
        (0, 10, 0),
        (2, 1, 3),
        (1, 1, 2),
        (2, 2, 4),
    ] {
        assert_eq!(
            store.outbox_peek(a, max_pdus, max_edus).await.unwrap(),
            all[..expected],
            "peek with at most {max_pdus} PDUs and {max_edus} EDUs"
        );
    }

    // Removal is per destination.
    store.outbox_remove(b, &[all[2].id]).await.unwrap();
    store.outbox_remove(a, &[]).await.unwrap();
    assert_eq!(store.outbox_peek(a, 10, 10).await.unwrap(), all);
    store
        .outbox_remove(a, &[all[0].id, all[1].id])
        .await
        .unwrap();
    assert_eq!(store.outbox_peek(a, 10, 10).await.unwrap(), all[2..]);

    assert_eq!(store.outbox_drop(b).await.unwrap(), 1);
    assert_eq!(store.outbox_drop("nowhere.example").await.unwrap(), 0);
    assert_eq!(destinations(store).await, [a, c]);
    assert!(store.outbox_peek(b, 10, 10).await.unwrap().is_empty());

    // New rows come after the remaining ones.
    store.queue_edu(&[a.to_owned()], edu(4)).await.unwrap();
    let now = store.outbox_peek(a, 10, 10).await.unwrap();
    assert_eq!(contents(&now), [Pdu(second_id), Edu(edu(2)), Edu(edu(4))]);
    assert!(now[2].id > all[3].id);

    // The rows are written in the event's transaction: a failed batch queues nothing.
    let mut queued = loose_message("$fook", &r.room_id, r.snapshot, 20);
    queued.destinations = vec!["d.example".to_owned()];
    let broken = NewEvent {
        state: NewState::Changed {
            base: Some(SnapshotId::MAX),
            changes: vec![(key("m.room.topic", ""), event("$fobroken"))],
        },
        ..loose_message("$fobroken", &r.room_id, r.snapshot, 21)
    };
    assert!(store.persist_events(vec![queued, broken]).await.is_err());
    assert!(store
        .outbox_peek("d.example", 10, 10)
        .await
        .unwrap()
        .is_empty());
    assert_eq!(destinations(store).await, [a, c]);
}

/// A transaction's response is recorded once: a retry is answered with the first response.
pub async fn received_transactions(store: &dyn Storage) {
    let origin = "remote.example";
    assert_eq!(store.received_txn(origin, "t1").await.unwrap(), None);
    let first = json!({"pdus": {"$a": {}}}).to_string();
    store
        .record_received_txn(origin, "t1", first.clone(), 1_000)
        .await
        .unwrap();
    assert_eq!(
        store.received_txn(origin, "t1").await.unwrap(),
        Some(first.clone())
    );
    store
        .record_received_txn(origin, "t1", json!({"pdus": {}}).to_string(), 2_000)
        .await
        .expect("recording again is no error");
    assert_eq!(
        store.received_txn(origin, "t1").await.unwrap(),
        Some(first),
        "the first response wins"
    );
    assert_eq!(
        store.received_txn("other.example", "t1").await.unwrap(),
        None,
        "transaction IDs are per origin"
    );
    assert_eq!(store.received_txn(origin, "t2").await.unwrap(), None);
}

/// A resolved current state replaces the current state; the room then has no current snapshot,
/// so the next move rewrites it in full (even back to the snapshot it was at before).
pub async fn resolved_current_state_replaces_current_state(store: &dyn Storage) {
    let alice = "@alice:localhost";
    let bob = "@bob:localhost";
    let mut r = TestRoom::create(store, "!res:localhost", alice, "res").await;
    r.member(store, bob, bob, "join").await;
    r.state_event(store, "m.room.topic", "", json!({"topic": "t"}))
        .await;
    let full = r.state.clone();
    let snapshot = r.snapshot;

    // A fork resolved to a state that is no stored snapshot.
    let resolved = StateMap::from([
        (key("m.room.create", ""), event("$rescreate")),
        (
            key("m.room.member", alice),
            full[&key("m.room.member", alice)].clone(),
        ),
        (key("m.room.name", ""), event("$resname")),
    ]);
    let merge = r.next_pdu(alice, "m.room.message", None, json!({"body": "merge"}));
    let mut merge = r.new_event(merge);
    merge.resolved_current_state = Some(resolved.clone());
    let merged = r.append(store, merge).await;
    assert_eq!(store.current_state(&r.room_id).await.unwrap(), resolved);
    assert_eq!(
        store
            .state_at_snapshot(merged.state_snapshot)
            .await
            .unwrap(),
        full,
        "the event's snapshot is still the state after it"
    );

    // Ignored when the event does not move the current state, or is rejected.
    let side = r.next_pdu(alice, "m.room.message", None, json!({"body": "side"}));
    let mut side = r.new_event(side);
    side.updates_current_state = false;
    side.resolved_current_state = Some(StateMap::new());
    store.persist_event(side).await.unwrap();
    let mut bad = r.next_pdu(alice, "m.room.message", None, json!({"body": "bad"}));
    bad.rejected = true;
    let mut bad = r.new_event(bad);
    bad.resolved_current_state = Some(StateMap::new());
    store.persist_event(bad).await.unwrap();
    assert_eq!(store.current_state(&r.room_id).await.unwrap(), resolved);

    // Back to the snapshot the current state was at before the fork.
    assert_eq!(r.snapshot, snapshot);
    r.message(store, alice, "back").await;
    assert_eq!(store.current_state(&r.room_id).await.unwrap(), full);

    // Resolved again, then a state event on top of the old snapshot (a delta to it).
    let again = r.next_pdu(alice, "m.room.message", None, json!({"body": "again"}));
    let mut again = r.new_event(again);
    again.resolved_current_state = Some(resolved.clone());
    r.append(store, again).await;
    assert_eq!(store.current_state(&r.room_id).await.unwrap(), resolved);
    r.state_event(store, "m.room.name", "", json!({"name": "n"}))
        .await;
    assert_eq!(r.state.len(), full.len() + 1);
    assert_eq!(store.current_state(&r.room_id).await.unwrap(), r.state);
}

/// A local user's membership in a room this server is not in: the event is kept as an outlier,
/// the membership moves at a new stream position, and the invite's stripped state is kept.
pub async fn outside_memberships(store: &dyn Storage) {
    let alice = "@alice:localhost";
    let inviter = "@bob:remote.example";
    let remote_room = room("!remote:remote.example");
    let invite = pdu(
        "$osinvite",
        remote_room.as_str(),
        inviter,
        "m.room.member",
        Some(alice),
        json!({"membership": "invite"}),
        5,
        &[],
    );
    let stripped = json!([{
        "type": "m.room.name",
        "state_key": "",
        "sender": inviter,
        "content": {"name": "Remote"}
    }])
    .to_string();
    let start = store.current_stream_pos().await.unwrap();
    let pos = store
        .persist_outside_membership(
            invite.clone(),
            &user(alice),
            "invite",
            Some(stripped.clone()),
        )
        .await
        .unwrap();
    assert!(pos > start);
    assert_eq!(
        store.current_stream_pos().await.unwrap(),
        pos,
        "the new position is visible"
    );
    let membership = |event_id: &str, membership: &str, stream_pos| MembershipRecord {
        room_id: remote_room.clone(),
        user_id: user(alice),
        membership: membership.to_owned(),
        event_id: event(event_id),
        stream_pos,
        forgotten: false,
        joined_pos: None,
    };
    assert_eq!(
        store.memberships_of_user(&user(alice)).await.unwrap(),
        [membership("$osinvite", "invite", pos)]
    );
    assert_eq!(
        store
            .stripped_state(&remote_room, &user(alice))
            .await
            .unwrap(),
        Some(stripped.clone())
    );
    assert_eq!(
        store
            .stripped_state(&remote_room, &user("@carol:localhost"))
            .await
            .unwrap(),
        None
    );
    let record = store.get_event(&invite.event_id).await.unwrap().unwrap();
    assert_eq!(record.outlier, Some(OutlierStatus::Outlier));
    assert_eq!(record.stream_pos, StreamPos::ZERO);
    assert_eq!(store.room_info(&remote_room).await.unwrap(), None);
    assert_eq!(
        store.rooms_with_events_between(start, pos).await.unwrap(),
        Vec::<OwnedRoomId>::new(),
        "no timeline event"
    );

    // The rejection, after the room was forgotten: a new position, the stripped state kept.
    store.forget_room(&user(alice), &remote_room).await.unwrap();
    let leave = pdu(
        "$osleave",
        remote_room.as_str(),
        alice,
        "m.room.member",
        Some(alice),
        json!({"membership": "leave"}),
        6,
        std::slice::from_ref(&invite.event_id),
    );
    let pos2 = store
        .persist_outside_membership(leave, &user(alice), "leave", None)
        .await
        .unwrap();
    assert!(pos2 > pos);
    assert_eq!(store.current_stream_pos().await.unwrap(), pos2);
    assert_eq!(
        store.memberships_of_user(&user(alice)).await.unwrap(),
        [membership("$osleave", "leave", pos2)]
    );
    assert_eq!(
        store
            .stripped_state(&remote_room, &user(alice))
            .await
            .unwrap(),
        Some(stripped),
        "None keeps the stored stripped state"
    );
    assert_eq!(
        store
            .get_event(&event("$osleave"))
            .await
            .unwrap()
            .unwrap()
            .outlier,
        Some(OutlierStatus::Outlier)
    );

    // An event stored already is no error; new stripped state replaces the old.
    let pos3 = store
        .persist_outside_membership(invite, &user(alice), "invite", Some("[]".to_owned()))
        .await
        .unwrap();
    assert!(pos3 > pos2);
    assert_eq!(
        store.memberships_of_user(&user(alice)).await.unwrap(),
        [membership("$osinvite", "invite", pos3)]
    );
    assert_eq!(
        store
            .stripped_state(&remote_room, &user(alice))
            .await
            .unwrap(),
        Some("[]".to_owned())
    );

    // The positions are those of the global counter: the next write follows without a gap.
    let next = store
        .set_account_data(&user(alice), None, "m.x", &json!({}))
        .await
        .unwrap();
    assert_eq!(next, pos3.next());
}

// ---- stream positions -------------------------------------------------------------------------

/// Many concurrent writers of every positioned kind: positions are distinct, each writer's own
/// positions increase, readers never see the position go back, and the final position is the max.
pub async fn stream_positions_increase_under_concurrency(store: Arc<dyn Storage>) {
    const WRITERS: usize = 8;
    const WRITES: usize = 12;
    let alice = "@alice:localhost";
    let room_fixture = TestRoom::create(&*store, "!conc:localhost", alice, "q").await;
    let start = store.current_stream_pos().await.unwrap();
    let (room_id, snapshot) = (room_fixture.room_id.clone(), room_fixture.snapshot);

    let reader = {
        let store = store.clone();
        tokio::spawn(async move {
            let mut last = StreamPos::ZERO;
            for _ in 0..200 {
                let now = store.current_stream_pos().await.unwrap();
                assert!(
                    now >= last,
                    "current_stream_pos went back from {last} to {now}"
                );
                last = now;
                tokio::task::yield_now().await;
            }
        })
    };

    let mut tasks = tokio::task::JoinSet::new();
    for w in 0..WRITERS {
        let store = store.clone();
        let room_id = room_id.clone();
        tasks.spawn(async move {
            let user_id = user(&format!("@u{w}:localhost"));
            let mut positions = Vec::new();
            for i in 0..WRITES {
                let pos = match i % 4 {
                    0 => store
                        .set_account_data(&user_id, None, "m.x", &json!({"i": i}))
                        .await
                        .unwrap(),
                    1 => store
                        .set_presence(&user_id, "online", None, i as u64)
                        .await
                        .unwrap(),
                    2 => store
                        .set_receipt(ReceiptRecord {
                            room_id: room_id.clone(),
                            receipt_type: "m.read".into(),
                            user_id: user_id.clone(),
                            thread_id: None,
                            event_id: event("$qcreate"),
                            ts: i as u64,
                            stream_pos: StreamPos::ZERO,
                        })
                        .await
                        .unwrap(),
                    _ => {
                        let id = format!("$w{w}i{i}");
                        let pdu = pdu(
                            &id,
                            room_id.as_str(),
                            "@alice:localhost",
                            "m.room.message",
                            None,
                            json!({"i": i}),
                            3,
                            &[],
                        );
                        store
                            .persist_event(NewEvent {
                                pdu,
                                room: None,
                                state: NewState::Same(snapshot),
                                updates_current_state: false,
                                membership: None,
                                txn: None,
                                redaction: None,
                                forward_extremities: vec![event(&id)],
                                resolved_current_state: None,
                                destinations: Vec::new(),
                            })
                            .await
                            .unwrap()
                            .stream_pos
                    }
                };
                positions.push(pos);
            }
            positions
        });
    }
    let mut all = Vec::new();
    while let Some(result) = tasks.join_next().await {
        let positions = result.expect("writer task panicked");
        assert!(
            positions.windows(2).all(|w| w[0] < w[1]),
            "a writer's positions increase: {positions:?}"
        );
        all.extend(positions);
    }
    reader.await.expect("reader task panicked");

    let distinct: BTreeSet<_> = all.iter().copied().collect();
    assert_eq!(distinct.len(), WRITERS * WRITES, "positions are distinct");
    assert!(all.iter().all(|p| *p > start));
    let max = distinct.iter().next_back().copied().unwrap();
    assert_eq!(store.current_stream_pos().await.unwrap(), max);

    let events = store
        .room_events(&room_id, max, Some(start), Direction::Backward, 1_000)
        .await
        .unwrap();
    assert_eq!(
        events.len(),
        WRITERS * WRITES / 4,
        "every concurrent event is in the timeline"
    );
    let by_pos: BTreeMap<_, _> = events
        .iter()
        .map(|e| (e.stream_pos, e.pdu.event_id.clone()))
        .collect();
    assert_eq!(by_pos.len(), events.len());
}

// ---- transactions -----------------------------------------------------------------------------

/// A message in `room` on top of `snapshot` with the given (fresh) ID; no state change.
fn loose_message(id: &str, room_id: &OwnedRoomId, snapshot: SnapshotId, depth: u64) -> NewEvent {
    NewEvent {
        pdu: pdu(
            id,
            room_id.as_str(),
            "@alice:localhost",
            "m.room.message",
            None,
            json!({"body": id}),
            depth,
            &[],
        ),
        room: None,
        state: NewState::Same(snapshot),
        updates_current_state: true,
        membership: None,
        txn: None,
        redaction: None,
        forward_extremities: vec![event(id)],
        resolved_current_state: None,
        destinations: Vec::new(),
    }
}

/// A write that fails half-way leaves nothing behind: no rows, no state change, no membership,
/// no room, and no stream position used up.
pub async fn failed_writes_roll_back(store: &dyn Storage) {
    let alice = "@alice:localhost";
    let bob = "@bob:localhost";
    let mut r = TestRoom::create(store, "!rb:localhost", alice, "rb").await;
    let start = store.current_stream_pos().await.unwrap();
    let extremities = store.forward_extremities(&r.room_id).await.unwrap();

    // A batch whose last event refers to a snapshot that does not exist.
    let join_pdu = r.next_pdu(
        bob,
        "m.room.member",
        Some(bob),
        json!({"membership": "join"}),
    );
    let mut join = r.new_event(join_pdu);
    join.membership = Some(MembershipChange {
        user_id: user(bob),
        membership: "join".into(),
    });
    join.txn = Some((device("DEV1"), "rb-txn".into()));
    let join_id = join.pdu.event_id.clone();
    let other_room = room("!rb2:localhost");
    let create_other = NewEvent {
        room: Some(NewRoom {
            room_id: other_room.clone(),
            version: RoomVersionId::V10,
            creator: user(alice),
            created_ms: 1,
        }),
        state: NewState::Changed {
            base: None,
            changes: vec![(key("m.room.create", ""), event("$rb2create"))],
        },
        ..loose_message("$rb2create", &other_room, 0, 1)
    };
    let broken = NewEvent {
        state: NewState::Changed {
            base: Some(SnapshotId::MAX),
            changes: vec![(key("m.room.topic", ""), event("$rbbroken"))],
        },
        ..loose_message("$rbbroken", &r.room_id, r.snapshot, 9)
    };
    let result = store.persist_events(vec![join, create_other, broken]).await;
    assert!(
        result.is_err(),
        "a batch with an unknown base snapshot fails"
    );
    assert!(
        store.get_event(&join_id).await.unwrap().is_none(),
        "first event rolled back"
    );
    assert!(store
        .get_event(&event("$rb2create"))
        .await
        .unwrap()
        .is_none());
    assert_eq!(
        store.room_info(&other_room).await.unwrap(),
        None,
        "room row rolled back"
    );
    assert_eq!(
        store.current_state(&r.room_id).await.unwrap(),
        r.state,
        "state rolled back"
    );
    assert!(
        store
            .room_members(&r.room_id)
            .await
            .unwrap()
            .iter()
            .all(|m| m.user_id != user(bob)),
        "membership rolled back"
    );
    assert_eq!(
        store
            .event_for_txn(&user(bob), "DEV1", "rb-txn")
            .await
            .unwrap(),
        None
    );
    assert_eq!(
        store.forward_extremities(&r.room_id).await.unwrap(),
        extremities
    );
    assert_eq!(
        store.current_stream_pos().await.unwrap(),
        start,
        "no position taken"
    );

    // A single event whose ID exists already.
    let duplicate = loose_message("$rbcreate", &r.room_id, r.snapshot, 9);
    assert!(
        store.persist_event(duplicate).await.is_err(),
        "duplicate event ID fails"
    );
    let original = store.get_event(&event("$rbcreate")).await.unwrap().unwrap();
    assert_eq!(
        original.pdu.kind.to_string(),
        "m.room.create",
        "original kept"
    );
    assert_eq!(store.current_stream_pos().await.unwrap(), start);

    // A session whose token exists already creates no device.
    store.create_user(new_user(alice, Some("h"))).await.unwrap();
    store
        .create_session(session(alice, "RB1", "rb-token", None))
        .await
        .unwrap();
    assert!(store
        .create_session(session(alice, "RB2", "rb-token", None))
        .await
        .is_err());
    assert_eq!(
        store.get_device(&user(alice), "RB2").await.unwrap(),
        None,
        "device rolled back"
    );

    // The store still works, and the next position follows the last committed one.
    let (_, next) = r.message(store, alice, "after").await;
    assert_eq!(
        next.stream_pos,
        start.next(),
        "failed writes used up no position"
    );
    assert_eq!(store.current_stream_pos().await.unwrap(), next.stream_pos);
}

// ---- concurrency ------------------------------------------------------------------------------

/// Concurrent writers that race for the same row: exactly one wins where one must, and
/// per-user counters never hand out the same ID twice.
pub async fn concurrent_writers_do_not_collide(store: Arc<dyn Storage>) {
    const TASKS: usize = 8;
    let alice = user("@alice:localhost");

    let mut tasks = tokio::task::JoinSet::new();
    for t in 0..TASKS {
        let store = store.clone();
        let alice = alice.clone();
        tasks.spawn(async move {
            let created = store
                .create_user(NewUser {
                    displayname: Some(format!("task {t}")),
                    ..new_user("@alice:localhost", None)
                })
                .await
                .unwrap();
            let aliased = store
                .create_alias(
                    &alias("#race:localhost"),
                    &room(&format!("!race{t}:localhost")),
                    &alice,
                )
                .await
                .unwrap();
            let mut filters = Vec::new();
            for i in 0..4 {
                filters.push((
                    store
                        .create_filter(&alice, &json!({"t": t, "i": i}))
                        .await
                        .unwrap(),
                    json!({"t": t, "i": i}),
                ));
            }
            (created, aliased, filters)
        });
    }
    let (mut created, mut aliased, mut filters) = (0, 0, Vec::new());
    while let Some(result) = tasks.join_next().await {
        let (c, a, f) = result.expect("writer task panicked");
        created += usize::from(c);
        aliased += usize::from(a);
        filters.extend(f);
    }
    assert_eq!(created, 1, "exactly one concurrent create_user wins");
    assert_eq!(aliased, 1, "exactly one concurrent create_alias wins");
    let ids: BTreeSet<_> = filters.iter().map(|(id, _)| id.clone()).collect();
    assert_eq!(ids.len(), TASKS * 4, "filter IDs are distinct");
    for (id, filter) in &filters {
        assert_eq!(
            store.get_filter(&alice, id).await.unwrap().as_ref(),
            Some(filter)
        );
    }
}

/// While writers append events (alone and in batches), every position a reader sees as current
/// has all events up to it readable: positions become visible in order, without gaps.
pub async fn readers_never_see_a_gap_in_positions(store: Arc<dyn Storage>) {
    const WRITERS: usize = 4;
    const ROUNDS: usize = 10;
    let fixture = TestRoom::create(&*store, "!gap:localhost", "@alice:localhost", "g").await;
    let start = store.current_stream_pos().await.unwrap();
    let (room_id, snapshot) = (fixture.room_id.clone(), fixture.snapshot);

    let done = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let reader = {
        let (store, room_id, done) = (store.clone(), room_id.clone(), done.clone());
        tokio::spawn(async move {
            let mut checks = 0;
            loop {
                let finished = done.load(std::sync::atomic::Ordering::Acquire);
                let now = store.current_stream_pos().await.unwrap();
                let events = store
                    .room_events(&room_id, start, Some(now), Direction::Forward, 10_000)
                    .await
                    .unwrap();
                let seen: Vec<i64> = events.iter().map(|e| e.stream_pos.0).collect();
                let expected: Vec<i64> = (start.0 + 1..=now.0).collect();
                assert_eq!(
                    seen, expected,
                    "every position up to the current one is readable"
                );
                checks += 1;
                if finished {
                    return checks;
                }
                tokio::task::yield_now().await;
            }
        })
    };

    let mut tasks = tokio::task::JoinSet::new();
    for w in 0..WRITERS {
        let (store, room_id) = (store.clone(), room_id.clone());
        tasks.spawn(async move {
            for i in 0..ROUNDS {
                if i % 2 == 0 {
                    store
                        .persist_event(loose_message(&format!("$g{w}x{i}"), &room_id, snapshot, 3))
                        .await
                        .unwrap();
                } else {
                    let batch = (0..3)
                        .map(|b| loose_message(&format!("$g{w}x{i}b{b}"), &room_id, snapshot, 3))
                        .collect();
                    let persisted = store.persist_events(batch).await.unwrap();
                    assert!(
                        persisted
                            .windows(2)
                            .all(|p| p[1].stream_pos == p[0].stream_pos.next()),
                        "a batch takes consecutive positions: {persisted:?}"
                    );
                }
            }
        });
    }
    while let Some(result) = tasks.join_next().await {
        result.expect("writer task panicked");
    }
    done.store(true, std::sync::atomic::Ordering::Release);
    let checks = reader.await.expect("reader task panicked");
    assert!(checks > 0);
    let total = WRITERS * (ROUNDS / 2 + 3 * (ROUNDS / 2));
    assert_eq!(
        store.current_stream_pos().await.unwrap().0 - start.0,
        i64::try_from(total).unwrap()
    );
}

pub async fn events_near_a_timestamp(store: &dyn Storage) {
    let mut room = TestRoom::create(store, "!time:localhost", "@alice:localhost", "t").await;
    let (first, _) = room.message(store, "@alice:localhost", "one").await;
    let first_ts = store
        .get_event(&first)
        .await
        .unwrap()
        .unwrap()
        .pdu
        .origin_server_ts;
    let first_ts = u64::from(first_ts.get());
    let (second, _) = room.message(store, "@alice:localhost", "two").await;
    let room_id = room.room_id.clone();
    let near = |ts: u64, dir: Direction| {
        let room_id = room_id.clone();
        async move { store.event_near_timestamp(&room_id, ts, dir).await.unwrap() }
    };

    assert_eq!(
        near(first_ts, Direction::Forward).await,
        Some((first.clone(), first_ts))
    );
    assert_eq!(
        near(first_ts, Direction::Backward).await,
        Some((first.clone(), first_ts))
    );
    assert_eq!(
        near(first_ts + 1, Direction::Forward)
            .await
            .map(|(id, _)| id),
        Some(second.clone()),
        "the first event at or after the time"
    );
    assert_eq!(
        near(first_ts + 1000, Direction::Backward)
            .await
            .map(|(id, _)| id),
        Some(second),
        "the last event at or before the time"
    );
    assert_eq!(near(first_ts + 1000, Direction::Forward).await, None);
    assert_eq!(near(0, Direction::Backward).await, None);
    assert_eq!(
        store
            .event_near_timestamp(
                &self::room("!other:localhost"),
                first_ts,
                Direction::Forward
            )
            .await
            .unwrap(),
        None,
        "only the room's own events"
    );
}
