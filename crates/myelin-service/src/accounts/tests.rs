//! The accounts subsystem's own decisions: passwords, tokens, names, deactivation.

use crate::{rooms::Membership, test_support::harness, ServiceError};

#[tokio::test]
async fn a_password_login_gives_a_token_that_logout_revokes() {
    let h = harness();
    let accounts = &h.services.accounts;
    accounts
        .create_user("alice", Some("correct horse"), false)
        .await
        .unwrap();
    let wrong = accounts
        .login_password("alice", "wrong", None, None, false)
        .await;
    assert!(
        matches!(wrong, Err(ServiceError::Forbidden(_))),
        "{wrong:?}"
    );

    let session = accounts
        .login_password("Alice", "correct horse", Some("PHONE"), None, false)
        .await
        .unwrap();
    assert_eq!(session.user_id.as_str(), "@alice:test.local");
    assert_eq!(session.device_id.as_str(), "PHONE");
    let authed = accounts.authenticate(&session.access_token).await.unwrap();
    assert_eq!(authed.user_id, session.user_id);

    accounts.logout(&authed).await.unwrap();
    let after = accounts.authenticate(&session.access_token).await;
    assert!(
        matches!(
            after,
            Err(ServiceError::UnknownToken { soft_logout: false })
        ),
        "{after:?}"
    );
}

#[tokio::test]
async fn a_taken_or_invalid_name_is_refused() {
    let h = harness();
    let accounts = &h.services.accounts;
    accounts.create_user("bob", None, false).await.unwrap();
    let again = accounts.create_user("bob", None, false).await;
    assert!(matches!(again, Err(ServiceError::UserInUse)), "{again:?}");
    let bad = accounts.check_username_available("no spaces").await;
    assert!(
        matches!(bad, Err(ServiceError::InvalidUsername(_))),
        "{bad:?}"
    );
}

#[tokio::test]
async fn deactivation_leaves_every_room_and_revokes_every_token() {
    let h = harness();
    let accounts = &h.services.accounts;
    let alice = h.user("alice").await;
    let session = accounts
        .start_session(&alice.user_id, None, None, false)
        .await
        .unwrap();
    let room = h.room(&alice, "public_chat").await;
    accounts.deactivate(&alice.user_id, false).await.unwrap();

    let state = h.services.rooms.room_state(&room).await.unwrap();
    assert_eq!(state.membership(&alice.user_id), Some(Membership::Leave));
    assert!(accounts.authenticate(&session.access_token).await.is_err());
    let again = accounts.create_user("alice", None, false).await;
    assert!(matches!(again, Err(ServiceError::UserInUse)), "{again:?}");
}
