//! Conformance tests of [`AppserviceStore`](crate::AppserviceStore): a new appservice starts at
//! the position given, a pending transaction survives until accepted and blocks a second one,
//! and the delivered position only moves forward.

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
