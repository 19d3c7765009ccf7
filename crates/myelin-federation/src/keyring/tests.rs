//! Tests of the keyring: fetching, caching and validity of remote server keys.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

use ruma::signatures::Ed25519KeyPair;

use super::*;
use crate::keys::{add_signature, own_server_keys, public_key_base64, tests::key_pair, OldKey};

struct FixedClock(AtomicU64);
impl Clock for FixedClock {
    fn now_ms(&self) -> u64 {
        self.0.load(Ordering::SeqCst)
    }
}

/// Servers answer with whatever response they were given; notaries relay them signed.
#[derive(Default)]
struct FakeNet {
    responses: Mutex<HashMap<String, CanonicalJsonObject>>,
    notary_keys: Mutex<HashMap<String, Arc<Ed25519KeyPair>>>,
    down: Mutex<Vec<String>>,
    calls: AtomicUsize,
    /// When set, direct fetches wait for a permit of it (to hold them under way).
    gate: Mutex<Option<Arc<tokio::sync::Semaphore>>>,
    /// Signalled at every direct fetch.
    called: tokio::sync::Notify,
}

#[async_trait]
impl KeySource for FakeNet {
    async fn server_keys(&self, server: &ServerName) -> Result<CanonicalJsonObject, RequestError> {
        self.calls.fetch_add(1, Ordering::SeqCst);
        self.called.notify_waiters();
        let gate = self.gate.lock().unwrap().clone();
        if let Some(gate) = gate {
            let _permit = gate.acquire().await.expect("gate open");
        }
        tokio::task::yield_now().await;
        if self
            .down
            .lock()
            .unwrap()
            .iter()
            .any(|d| d == server.as_str())
        {
            return Err(RequestError::Status {
                status: 502,
                body: String::new(),
            });
        }
        self.responses
            .lock()
            .unwrap()
            .get(server.as_str())
            .cloned()
            .ok_or(RequestError::Status {
                status: 404,
                body: String::new(),
            })
    }

    async fn notary_keys(
        &self,
        notary: &ServerName,
        server: &ServerName,
        _min: u64,
    ) -> Result<Vec<CanonicalJsonObject>, RequestError> {
        let key = self
            .notary_keys
            .lock()
            .unwrap()
            .get(notary.as_str())
            .cloned()
            .ok_or(RequestError::Status {
                status: 404,
                body: String::new(),
            })?;
        let mut raw = self
            .responses
            .lock()
            .unwrap()
            .get(server.as_str())
            .cloned()
            .ok_or(RequestError::Status {
                status: 404,
                body: String::new(),
            })?;
        add_signature(&mut raw, notary, &key);
        Ok(vec![raw])
    }
}

fn name(s: &str) -> OwnedServerName {
    s.try_into().expect("valid server name")
}

fn keyring(net: Arc<FakeNet>, clock: Arc<FixedClock>, notaries: &[&str]) -> Keyring {
    let own = OwnKeys {
        server_name: name("me.example"),
        keys: BTreeMap::from([("ed25519:me".to_owned(), "bWU".to_owned())]),
    };
    Keyring::new(
        own,
        Arc::new(MemoryKeyStore::default()),
        net,
        notaries.iter().map(|n| name(n)).collect(),
        clock,
    )
}

#[tokio::test]
async fn fetches_caches_and_refetches_when_expired() {
    let net = Arc::new(FakeNet::default());
    let clock = Arc::new(FixedClock(AtomicU64::new(1_000)));
    let remote = key_pair("r1");
    net.responses.lock().unwrap().insert(
        "remote.example".into(),
        own_server_keys(&name("remote.example"), &remote, &BTreeMap::new(), 10_000),
    );
    let ring = keyring(net.clone(), clock.clone(), &[]);

    let key = ring
        .public_key(&name("remote.example"), "ed25519:r1", 1_000)
        .await
        .expect("fetched");
    assert_eq!(key, public_key_base64(&remote));
    ring.public_key(&name("remote.example"), "ed25519:r1", 2_000)
        .await
        .expect("cached");
    assert_eq!(net.calls.load(Ordering::SeqCst), 1);

    // Past valid_until_ts the key is fetched again; the renewed response is used.
    net.responses.lock().unwrap().insert(
        "remote.example".into(),
        own_server_keys(&name("remote.example"), &remote, &BTreeMap::new(), 50_000),
    );
    clock.0.store(20_000, Ordering::SeqCst);
    ring.public_key(&name("remote.example"), "ed25519:r1", 20_000)
        .await
        .expect("refetched");
    assert_eq!(net.calls.load(Ordering::SeqCst), 2);
    // An event signed in the past still finds the key.
    ring.public_key(&name("remote.example"), "ed25519:r1", 5_000)
        .await
        .expect("old signature");

    // Own keys are never fetched.
    assert_eq!(
        ring.public_key(&name("me.example"), "ed25519:me", 0)
            .await
            .expect("own"),
        "bWU"
    );
    assert!(ring
        .public_key(&name("me.example"), "ed25519:other", 0)
        .await
        .is_err());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_lookups_fetch_once() {
    let net = Arc::new(FakeNet::default());
    let clock = Arc::new(FixedClock(AtomicU64::new(1_000)));
    let remote = key_pair("r1");
    net.responses.lock().unwrap().insert(
        "remote.example".into(),
        own_server_keys(&name("remote.example"), &remote, &BTreeMap::new(), 10_000),
    );
    let ring = Arc::new(keyring(net.clone(), clock, &[]));
    let lookups = (0..8).map(|_| {
        let ring = ring.clone();
        tokio::spawn(async move {
            ring.public_key(&name("remote.example"), "ed25519:r1", 1_000)
                .await
        })
    });
    for lookup in lookups.collect::<Vec<_>>() {
        lookup.await.expect("task").expect("key");
    }
    assert_eq!(net.calls.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn old_verify_keys_check_old_signatures_only() {
    let net = Arc::new(FakeNet::default());
    let clock = Arc::new(FixedClock(AtomicU64::new(1_000)));
    let current = key_pair("new");
    let old = BTreeMap::from([(
        "ed25519:old".to_owned(),
        OldKey {
            key: "b2xk".into(),
            expired_ts: 500,
        },
    )]);
    net.responses.lock().unwrap().insert(
        "remote.example".into(),
        own_server_keys(&name("remote.example"), &current, &old, 10_000),
    );
    let ring = keyring(net.clone(), clock, &[]);
    assert_eq!(
        ring.public_key(&name("remote.example"), "ed25519:old", 400)
            .await
            .expect("old key"),
        "b2xk"
    );
    assert!(matches!(
        ring.public_key(&name("remote.example"), "ed25519:old", 600)
            .await,
        Err(KeyringError::RecentlyFailed { .. } | KeyringError::NotFound { .. })
    ));
}

#[tokio::test]
async fn falls_back_to_notary_and_checks_its_signature() {
    let net = Arc::new(FakeNet::default());
    let clock = Arc::new(FixedClock(AtomicU64::new(1_000)));
    let remote = key_pair("r1");
    let notary = Arc::new(key_pair("n1"));
    net.responses.lock().unwrap().insert(
        "remote.example".into(),
        own_server_keys(&name("remote.example"), &remote, &BTreeMap::new(), 10_000),
    );
    net.responses.lock().unwrap().insert(
        "notary.example".into(),
        own_server_keys(&name("notary.example"), &notary, &BTreeMap::new(), 10_000),
    );
    net.notary_keys
        .lock()
        .unwrap()
        .insert("notary.example".into(), notary.clone());
    net.down.lock().unwrap().push("remote.example".into());
    let ring = keyring(net.clone(), clock.clone(), &["notary.example"]);
    let key = ring
        .public_key(&name("remote.example"), "ed25519:r1", 1_000)
        .await
        .expect("through the notary");
    assert_eq!(key, public_key_base64(&remote));

    // A notary that signs with a key other than the one it publishes is not believed.
    let net = Arc::new(FakeNet::default());
    net.responses.lock().unwrap().insert(
        "remote.example".into(),
        own_server_keys(&name("remote.example"), &remote, &BTreeMap::new(), 10_000),
    );
    net.responses.lock().unwrap().insert(
        "notary.example".into(),
        own_server_keys(&name("notary.example"), &notary, &BTreeMap::new(), 10_000),
    );
    net.notary_keys
        .lock()
        .unwrap()
        .insert("notary.example".into(), Arc::new(key_pair("n1")));
    net.down.lock().unwrap().push("remote.example".into());
    let ring = keyring(net.clone(), clock.clone(), &["notary.example"]);
    assert!(ring
        .public_key(&name("remote.example"), "ed25519:r1", 1_000)
        .await
        .is_err());
    // ...and the failure is remembered for a while.
    let calls = net.calls.load(Ordering::SeqCst);
    assert!(matches!(
        ring.public_key(&name("remote.example"), "ed25519:r1", 1_000)
            .await,
        Err(KeyringError::RecentlyFailed { .. })
    ));
    assert_eq!(net.calls.load(Ordering::SeqCst), calls);
    clock.0.store(1_000 + FETCH_RETRY_MS, Ordering::SeqCst);
    assert!(!matches!(
        ring.public_key(&name("remote.example"), "ed25519:r1", 1_000)
            .await,
        Err(KeyringError::RecentlyFailed { .. })
    ));
}

#[tokio::test]
async fn validity_is_capped_at_seven_days() {
    let net = Arc::new(FakeNet::default());
    let clock = Arc::new(FixedClock(AtomicU64::new(0)));
    let remote = key_pair("r1");
    net.responses.lock().unwrap().insert(
        "remote.example".into(),
        own_server_keys(
            &name("remote.example"),
            &remote,
            &BTreeMap::new(),
            u64::MAX >> 12,
        ),
    );
    let ring = keyring(net.clone(), clock.clone(), &[]);
    ring.public_key(&name("remote.example"), "ed25519:r1", 0)
        .await
        .expect("fetched");
    clock.0.store(MAX_KEY_VALIDITY_MS + 1, Ordering::SeqCst);
    ring.public_key(
        &name("remote.example"),
        "ed25519:r1",
        MAX_KEY_VALIDITY_MS + 1,
    )
    .await
    .expect("refetched");
    assert_eq!(net.calls.load(Ordering::SeqCst), 2);
}

#[tokio::test]
async fn failures_are_forgotten_when_the_map_is_full() {
    let net = Arc::new(FakeNet::default());
    let clock = Arc::new(FixedClock(AtomicU64::new(1_000)));
    let ring = keyring(net.clone(), clock.clone(), &[]);
    for i in 0..MAX_REMEMBERED_FAILURES {
        ring.record_failure(&name(&format!("s{i}.example")), 1_000);
    }
    assert_eq!(ring.remembered_failures(), MAX_REMEMBERED_FAILURES);
    // Full of recent failures: the oldest makes room.
    ring.record_failure(&name("new.example"), 1_001);
    assert_eq!(ring.remembered_failures(), MAX_REMEMBERED_FAILURES);
    assert!(ring.failed_recently(&name("new.example")));
    // Once they are old, a full map is emptied of them.
    clock.0.store(1_000 + FETCH_RETRY_MS + 10, Ordering::SeqCst);
    ring.record_failure(&name("later.example"), 1_000 + FETCH_RETRY_MS + 10);
    assert_eq!(ring.remembered_failures(), 1);
    // A real lookup failure is remembered the same way.
    assert!(ring
        .public_key(&name("down.example"), "ed25519:x", 1_000)
        .await
        .is_err());
    assert_eq!(ring.remembered_failures(), 2);
}

#[tokio::test]
async fn a_notary_request_fetches_only_a_few_servers() {
    let net = Arc::new(FakeNet::default());
    let clock = Arc::new(FixedClock(AtomicU64::new(1_000)));
    let ring = keyring(net.clone(), clock, &[]);
    let mut budget = NotaryBudget::default();
    for i in 0..(NOTARY_FETCHES_PER_REQUEST + 10) {
        let answer = ring
            .notary_responses(&name(&format!("s{i}.example")), 0, &mut budget)
            .await;
        assert!(answer.is_empty());
    }
    assert_eq!(net.calls.load(Ordering::SeqCst), NOTARY_FETCHES_PER_REQUEST);
    // A server that just failed is not fetched again by the next request either.
    let mut budget = NotaryBudget::default();
    ring.notary_responses(&name("s0.example"), 0, &mut budget)
        .await;
    assert_eq!(net.calls.load(Ordering::SeqCst), NOTARY_FETCHES_PER_REQUEST);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn notary_fetches_under_way_are_capped_over_all_requests() {
    let net = Arc::new(FakeNet::default());
    let gate = Arc::new(tokio::sync::Semaphore::new(0));
    *net.gate.lock().unwrap() = Some(gate.clone());
    let clock = Arc::new(FixedClock(AtomicU64::new(1_000)));
    let ring = Arc::new(keyring(net.clone(), clock, &[]));
    let mut held = Vec::new();
    for i in 0..MAX_CONCURRENT_NOTARY_FETCHES {
        let called = net.called.notified();
        let ring = ring.clone();
        held.push(tokio::spawn(async move {
            let mut budget = NotaryBudget::default();
            ring.notary_responses(&name(&format!("held{i}.example")), 0, &mut budget)
                .await
        }));
        // Each request's fetch is under way before the next starts.
        tokio::time::timeout(std::time::Duration::from_secs(10), called)
            .await
            .expect("the fetch starts");
    }
    assert_eq!(
        net.calls.load(Ordering::SeqCst),
        MAX_CONCURRENT_NOTARY_FETCHES
    );
    // Every permit is taken: further requests are answered from the cache at once.
    for i in 0..4 {
        let mut budget = NotaryBudget::default();
        let answer = ring
            .notary_responses(&name(&format!("more{i}.example")), 0, &mut budget)
            .await;
        assert!(answer.is_empty());
    }
    assert_eq!(
        net.calls.load(Ordering::SeqCst),
        MAX_CONCURRENT_NOTARY_FETCHES
    );
    gate.add_permits(MAX_CONCURRENT_NOTARY_FETCHES);
    for task in held {
        task.await.expect("task");
    }
    // With the fetches done, a new request may fetch again.
    let mut budget = NotaryBudget::default();
    ring.notary_responses(&name("after.example"), 0, &mut budget)
        .await;
    assert_eq!(
        net.calls.load(Ordering::SeqCst),
        MAX_CONCURRENT_NOTARY_FETCHES + 1
    );
}
