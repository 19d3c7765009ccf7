//! Unit-test support for the subsystems: the real `Services` on a temporary SQLite database,
//! with a clock the test moves, and shortcuts for users and rooms. No HTTP.

use std::sync::{
    atomic::{AtomicU64, Ordering},
    Arc,
};

use myelin_core::Clock;
use myelin_room::SigningKey;
use ruma::{signatures::Ed25519KeyPair, OwnedEventId, OwnedRoomId, OwnedServerName, RoomId};
use serde_json::{json, Value};

use crate::{
    accounts::Authed, membership::CreateRoomRequest, FederationConfig, ServiceConfig,
    ServiceResult, Services,
};

/// A clock that only moves when the test says so.
pub(crate) struct TestClock(AtomicU64);

impl Clock for TestClock {
    fn now_ms(&self) -> u64 {
        self.0.load(Ordering::SeqCst)
    }
}

impl TestClock {
    pub(crate) fn advance(&self, ms: u64) {
        self.0.fetch_add(ms, Ordering::SeqCst);
    }
}

pub(crate) struct Harness {
    pub services: Arc<Services>,
    pub clock: Arc<TestClock>,
    _dir: tempfile::TempDir,
}

/// A server named `test.local`, federation off, on a fresh database.
pub(crate) fn harness() -> Harness {
    harness_with(FederationConfig {
        enabled: false,
        ..FederationConfig::default()
    })
}

/// [`harness`] with this `[federation]` configuration (nothing is ever sent: no test runs the
/// outbox workers against a reachable server).
pub(crate) fn harness_with(federation: FederationConfig) -> Harness {
    harness_configured(federation, |_| {})
}

/// [`harness_with`] with the service configuration edited first (e.g. appservices).
pub(crate) fn harness_configured(
    federation: FederationConfig,
    edit: impl FnOnce(&mut ServiceConfig),
) -> Harness {
    let dir = tempfile::tempdir().expect("temporary directory");
    let storage = myelin_storage_sqlite::SqliteStore::open(&dir.path().join("test.db"))
        .expect("open the test database");
    let server_name = OwnedServerName::try_from("test.local").expect("server name");
    let der = Ed25519KeyPair::generate();
    let key_pair = Ed25519KeyPair::from_der(&der, "test".into()).expect("load the key");
    let key = SigningKey {
        server_name: server_name.clone(),
        key_pair,
    };
    let clock = Arc::new(TestClock(AtomicU64::new(1_700_000_000_000)));
    let mut config = ServiceConfig::new(server_name);
    config.media.path = Some(dir.path().join("media"));
    edit(&mut config);
    let services =
        Services::new_with_federation(config, federation, Arc::new(storage), key, clock.clone());
    Harness {
        services,
        clock,
        _dir: dir,
    }
}

impl Harness {
    /// A new user without a password, logged in on one device.
    pub(crate) async fn user(&self, localpart: &str) -> Authed {
        let accounts = &self.services.accounts;
        let user_id = accounts
            .create_user(localpart, None, false)
            .await
            .expect("create the user");
        let session = accounts
            .start_session(&user_id, None, None, false)
            .await
            .expect("start a session");
        Authed {
            user_id: session.user_id,
            device_id: session.device_id,
            is_guest: false,
            suspended: false,
            appservice: None,
        }
    }

    /// A room `creator` creates with this preset (`private_chat`, `public_chat`...).
    pub(crate) async fn room(&self, creator: &Authed, preset: &str) -> OwnedRoomId {
        let req = CreateRoomRequest {
            preset: Some(preset.to_owned()),
            ..CreateRoomRequest::default()
        };
        self.services
            .membership
            .create_room(&creator.user_id, req)
            .await
            .expect("create the room")
    }

    /// Sends an `m.room.message` with this body.
    pub(crate) async fn say(
        &self,
        who: &Authed,
        room_id: &RoomId,
        body: &str,
    ) -> ServiceResult<OwnedEventId> {
        let txn = format!("t{}", self.clock.now_ms());
        self.clock.advance(1);
        self.services
            .rooms
            .send_message(who, room_id, "m.room.message", &txn, text(body))
            .await
    }

    /// Joins `who` to the room.
    pub(crate) async fn join(&self, who: &Authed, room_id: &RoomId) -> ServiceResult<OwnedRoomId> {
        self.services
            .membership
            .join_room(&who.user_id, room_id.as_str(), None, &[])
            .await
    }
}

/// A text message's content.
pub(crate) fn text(body: &str) -> Value {
    json!({ "msgtype": "m.text", "body": body })
}
