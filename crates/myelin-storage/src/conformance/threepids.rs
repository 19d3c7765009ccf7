//! Conformance tests of [`ThreepidStore`](crate::ThreepidStore): validation sessions and the
//! addresses bound to accounts.

use super::*;
use crate::{NewUserWithThreepid, ThreepidSession, UserThreepid};

fn new_session(sid: &str, secret: &str, address: &str) -> ThreepidSession {
    ThreepidSession {
        sid: sid.into(),
        client_secret: secret.into(),
        medium: "email".into(),
        address: address.into(),
        token_hash: "hash-1".into(),
        send_attempt: 1,
        created_ms: 1_000,
        expires_ms: 10_000,
        validated_ms: None,
    }
}

pub async fn threepid_sessions_validate_once_and_in_time(store: &dyn Storage) {
    let s = new_session("sid1", "secret", "a@example.org");
    store.save_threepid_session(s.clone()).await.unwrap();
    assert_eq!(
        store.threepid_session("sid1", "secret").await.unwrap(),
        Some(s.clone())
    );
    assert_eq!(store.threepid_session("sid1", "wrong").await.unwrap(), None);
    assert_eq!(
        store
            .threepid_session_for("secret", "email", "a@example.org")
            .await
            .unwrap()
            .map(|s| s.sid),
        Some("sid1".to_owned())
    );
    assert!(!store
        .validate_threepid_session("sid1", "secret", "bad-hash", 2_000)
        .await
        .unwrap());
    // A resent token replaces the first.
    store
        .save_threepid_session(ThreepidSession {
            token_hash: "hash-2".into(),
            send_attempt: 2,
            ..s.clone()
        })
        .await
        .unwrap();
    assert!(!store
        .validate_threepid_session("sid1", "secret", "hash-1", 2_000)
        .await
        .unwrap());
    assert!(store
        .validate_threepid_session("sid1", "secret", "hash-2", 3_000)
        .await
        .unwrap());
    let validated = store
        .threepid_session("sid1", "secret")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(validated.validated_ms, Some(3_000));
    // Too late.
    store
        .save_threepid_session(new_session("sid2", "secret2", "b@example.org"))
        .await
        .unwrap();
    assert!(!store
        .validate_threepid_session("sid2", "secret2", "hash-1", 10_000)
        .await
        .unwrap());
}

pub async fn threepids_bind_to_one_account(store: &dyn Storage) {
    let (alice, bob) = (user("@alice:localhost"), user("@bob:localhost"));
    let bind = |user_id: &ruma::UserId, address: &str| UserThreepid {
        user_id: user_id.to_owned(),
        medium: "email".into(),
        address: address.into(),
        validated_ms: 5,
        added_ms: 6,
    };
    assert!(store
        .add_user_threepid(bind(&alice, "a@example.org"))
        .await
        .unwrap());
    assert!(!store
        .add_user_threepid(bind(&bob, "a@example.org"))
        .await
        .unwrap());
    assert!(store
        .add_user_threepid(bind(&alice, "a2@example.org"))
        .await
        .unwrap());
    assert_eq!(
        store
            .user_for_threepid("email", "a@example.org")
            .await
            .unwrap(),
        Some(alice.clone())
    );
    let listed = store.user_threepids(&alice).await.unwrap();
    assert_eq!(listed.len(), 2);
    assert_eq!(listed[0], bind(&alice, "a2@example.org"));
    assert!(!store
        .remove_user_threepid(&bob, "email", "a@example.org")
        .await
        .unwrap());
    assert!(store
        .remove_user_threepid(&alice, "email", "a@example.org")
        .await
        .unwrap());
    assert_eq!(
        store
            .user_for_threepid("email", "a@example.org")
            .await
            .unwrap(),
        None
    );
}

pub async fn threepid_id_server_bindings_are_remembered(store: &dyn Storage) {
    let (alice, bob) = (user("@alice:localhost"), user("@bob:localhost"));
    let a = "a@example.org";
    for server in ["is.example.org", "id.example.com", "is.example.org"] {
        store
            .add_threepid_id_server(&alice, "email", a, server)
            .await
            .unwrap();
    }
    assert_eq!(
        store.threepid_id_servers(&alice, "email", a).await.unwrap(),
        ["id.example.com", "is.example.org"]
    );
    assert!(store
        .threepid_id_servers(&bob, "email", a)
        .await
        .unwrap()
        .is_empty());
    store
        .remove_threepid_id_server(&alice, "email", a, "id.example.com")
        .await
        .unwrap();
    assert_eq!(
        store.threepid_id_servers(&alice, "email", a).await.unwrap(),
        ["is.example.org"]
    );
    store
        .add_threepid_id_server(&alice, "email", "b@example.org", "is.example.org")
        .await
        .unwrap();
    assert_eq!(
        store.bound_threepids(&alice).await.unwrap(),
        [
            ("email".to_owned(), a.to_owned()),
            ("email".to_owned(), "b@example.org".to_owned())
        ]
    );
    assert!(store.bound_threepids(&bob).await.unwrap().is_empty());
}

pub async fn registration_binds_its_address_or_creates_nothing(store: &dyn Storage) {
    let bind = |user_id: &str, address: &str| UserThreepid {
        user_id: user(user_id),
        medium: "email".into(),
        address: address.into(),
        validated_ms: 5,
        added_ms: 6,
    };
    let new = |user_id: &str| super::new_user(user_id, Some("hash"));
    let created = store
        .create_user_with_threepid(new("@carol:localhost"), bind("@carol:localhost", "c@x.org"))
        .await
        .unwrap();
    assert_eq!(created, NewUserWithThreepid::Created);
    assert!(store
        .get_user(&user("@carol:localhost"))
        .await
        .unwrap()
        .is_some());
    assert_eq!(
        store.user_for_threepid("email", "c@x.org").await.unwrap(),
        Some(user("@carol:localhost"))
    );
    // The same address for another new account: neither the account nor a binding is written.
    let taken = store
        .create_user_with_threepid(new("@dan:localhost"), bind("@dan:localhost", "c@x.org"))
        .await
        .unwrap();
    assert_eq!(taken, NewUserWithThreepid::ThreepidInUse);
    assert!(store
        .get_user(&user("@dan:localhost"))
        .await
        .unwrap()
        .is_none());
    assert_eq!(
        store.user_for_threepid("email", "c@x.org").await.unwrap(),
        Some(user("@carol:localhost"))
    );
    // A taken user ID: the address stays free.
    let in_use = store
        .create_user_with_threepid(new("@carol:localhost"), bind("@carol:localhost", "d@x.org"))
        .await
        .unwrap();
    assert_eq!(in_use, NewUserWithThreepid::UserInUse);
    assert_eq!(
        store.user_for_threepid("email", "d@x.org").await.unwrap(),
        None
    );
}
