//! The membership subsystem's own decisions: join rules, invites, kicks and bans.

use crate::{rooms::Membership, test_support::harness, ServiceError};

#[tokio::test]
async fn an_invite_only_room_needs_an_invite() {
    let h = harness();
    let (alice, bob) = (h.user("alice").await, h.user("bob").await);
    let room = h.room(&alice, "private_chat").await;

    let uninvited = h.join(&bob, &room).await;
    assert!(
        matches!(uninvited, Err(ServiceError::Forbidden(_))),
        "{uninvited:?}"
    );
    h.services
        .membership
        .invite(&alice.user_id, &room, &bob.user_id, None)
        .await
        .unwrap();
    h.join(&bob, &room).await.unwrap();
    let state = h.services.rooms.room_state(&room).await.unwrap();
    assert_eq!(state.membership(&bob.user_id), Some(Membership::Join));
}

#[tokio::test]
async fn a_banned_user_cannot_return_until_unbanned() {
    let h = harness();
    let (alice, bob) = (h.user("alice").await, h.user("bob").await);
    let room = h.room(&alice, "public_chat").await;
    let membership = &h.services.membership;
    h.join(&bob, &room).await.unwrap();

    membership
        .ban(&alice.user_id, &room, &bob.user_id, Some("spam"))
        .await
        .unwrap();
    let back = h.join(&bob, &room).await;
    assert!(matches!(back, Err(ServiceError::Forbidden(_))), "{back:?}");
    membership
        .unban(&alice.user_id, &room, &bob.user_id, None)
        .await
        .unwrap();
    h.join(&bob, &room).await.unwrap();
}

#[tokio::test]
async fn kicking_needs_power_and_a_member_to_kick() {
    let h = harness();
    let (alice, bob, carol) = (
        h.user("alice").await,
        h.user("bob").await,
        h.user("carol").await,
    );
    let room = h.room(&alice, "public_chat").await;
    let membership = &h.services.membership;
    h.join(&bob, &room).await.unwrap();
    h.join(&carol, &room).await.unwrap();

    let by_peer = membership
        .kick(&bob.user_id, &room, &carol.user_id, None)
        .await;
    assert!(
        matches!(by_peer, Err(ServiceError::Forbidden(_))),
        "{by_peer:?}"
    );
    membership
        .kick(&alice.user_id, &room, &carol.user_id, None)
        .await
        .unwrap();
    let state = h.services.rooms.room_state(&room).await.unwrap();
    assert_eq!(state.membership(&carol.user_id), Some(Membership::Leave));
    // Kicking someone who is not in the room is refused rather than recorded.
    let again = membership
        .kick(&alice.user_id, &room, &carol.user_id, None)
        .await;
    assert!(again.is_err(), "{again:?}");
}
