//! Conformance tests of [`AppserviceStore`](crate::AppserviceStore): a new appservice starts at
//! the position given, a pending transaction survives until accepted and blocks a second one,
//! and the delivered position only moves forward; each network's room directory is its own.

use myelin_core::StreamPos;

use crate::{PendingAppserviceTxn, Storage};

pub async fn appservice_transactions_are_kept_until_accepted(store: &impl Storage) {
    let state = store
        .appservice_state("bridge", StreamPos(7))
        .await
        .unwrap();
    assert_eq!(state.delivered_pos, StreamPos(7));
    assert_eq!(state.next_txn_id, 1);
    assert!(state.pending.is_none());
    // A second call does not move an existing appservice.
    let again = store
        .appservice_state("bridge", StreamPos(50))
        .await
        .unwrap();
    assert_eq!(again.delivered_pos, StreamPos(7));

    let txn = PendingAppserviceTxn {
        txn_id: 1,
        up_to: StreamPos(12),
        body: r#"{"events":[]}"#.to_owned(),
    };
    assert!(store
        .appservice_queue_txn("bridge", txn.clone())
        .await
        .unwrap());
    let second = PendingAppserviceTxn {
        txn_id: 2,
        ..txn.clone()
    };
    assert!(
        !store.appservice_queue_txn("bridge", second).await.unwrap(),
        "one pending transaction at a time"
    );
    // Skipping ahead while a transaction is pending changes nothing.
    store
        .appservice_skip_to("bridge", StreamPos(30))
        .await
        .unwrap();
    let state = store
        .appservice_state("bridge", StreamPos(0))
        .await
        .unwrap();
    assert_eq!(state.pending, Some(txn));
    assert_eq!(state.next_txn_id, 2);
    assert_eq!(state.delivered_pos, StreamPos(7));

    assert!(!store.appservice_txn_done("bridge", 9).await.unwrap());
    assert!(store.appservice_txn_done("bridge", 1).await.unwrap());
    let state = store
        .appservice_state("bridge", StreamPos(0))
        .await
        .unwrap();
    assert_eq!(state.delivered_pos, StreamPos(12));
    assert!(state.pending.is_none());

    store
        .appservice_skip_to("bridge", StreamPos(20))
        .await
        .unwrap();
    store
        .appservice_skip_to("bridge", StreamPos(15))
        .await
        .unwrap();
    let state = store
        .appservice_state("bridge", StreamPos(0))
        .await
        .unwrap();
    assert_eq!(state.delivered_pos, StreamPos(20), "never moves back");
    // Other appservices are apart.
    let other = store.appservice_state("other", StreamPos(3)).await.unwrap();
    assert_eq!(other.delivered_pos, StreamPos(3));
    assert_eq!(other.next_txn_id, 1);
}

/// MSC4190: an appservice creates its users' devices without tokens, and renames them.
pub async fn appservice_devices_are_made_without_tokens(store: &impl Storage) {
    let puppet = super::user("@bridge_puppet:localhost");
    store
        .create_user(super::new_user("@bridge_puppet:localhost", None))
        .await
        .unwrap();
    assert!(store.put_device(&puppet, "DEV1", None, 5).await.unwrap());
    assert!(!store
        .put_device(&puppet, "DEV1", Some("Phone"), 6)
        .await
        .unwrap());
    let device = store.get_device(&puppet, "DEV1").await.unwrap().unwrap();
    assert_eq!(device.display_name.as_deref(), Some("Phone"));
    assert!(!store.put_device(&puppet, "DEV1", None, 7).await.unwrap());
    let device = store.get_device(&puppet, "DEV1").await.unwrap().unwrap();
    assert_eq!(
        device.display_name.as_deref(),
        Some("Phone"),
        "no name keeps the name"
    );
    assert_eq!(store.list_devices(&puppet).await.unwrap().len(), 1);
}

/// Each (appservice, network) has its own directory, apart from the main one; "every network"
/// lists a room once however many networks publish it.
pub async fn appservice_network_directories(store: &impl Storage) {
    let (r1, r2, r3) = (
        super::room("!net1:localhost"),
        super::room("!net2:localhost"),
        super::room("!net3:localhost"),
    );
    assert!(store
        .network_published_rooms(None)
        .await
        .unwrap()
        .is_empty());
    let irc = Some(("bridge", "irc"));
    store
        .set_network_room_published("bridge", "irc", &r2, true)
        .await
        .unwrap();
    store
        .set_network_room_published("bridge", "irc", &r1, true)
        .await
        .unwrap();
    store
        .set_network_room_published("bridge", "irc", &r1, true)
        .await
        .unwrap(); // idempotent
    store
        .set_network_room_published("bridge", "slack", &r2, true)
        .await
        .unwrap();
    store
        .set_network_room_published("other", "irc", &r3, true)
        .await
        .unwrap();
    store
        .set_network_room_published("bridge", "irc", &r3, false)
        .await
        .unwrap(); // never published there: no-op
    assert_eq!(
        store.network_published_rooms(irc).await.unwrap(),
        [r1.clone(), r2.clone()],
        "ordered by room ID"
    );
    assert_eq!(
        store
            .network_published_rooms(Some(("bridge", "slack")))
            .await
            .unwrap(),
        std::slice::from_ref(&r2)
    );
    assert_eq!(
        store
            .network_published_rooms(Some(("other", "irc")))
            .await
            .unwrap(),
        std::slice::from_ref(&r3),
        "networks of the same name under other appservices are apart"
    );
    assert!(store
        .network_published_rooms(Some(("bridge", "matrix")))
        .await
        .unwrap()
        .is_empty());
    assert_eq!(
        store.network_published_rooms(None).await.unwrap(),
        [r1.clone(), r2.clone(), r3.clone()],
        "each room once"
    );
    assert!(
        store.published_rooms().await.unwrap().is_empty(),
        "the main directory is apart"
    );

    store
        .set_network_room_published("bridge", "irc", &r2, false)
        .await
        .unwrap();
    assert_eq!(
        store.network_published_rooms(irc).await.unwrap(),
        std::slice::from_ref(&r1)
    );
    assert_eq!(
        store.network_published_rooms(None).await.unwrap(),
        [r1, r2, r3],
        "still published under slack"
    );
}
