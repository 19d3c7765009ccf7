//! The ephemeral subsystem's own decisions: typing membership and expiry, receipts' targets.

use myelin_core::Clock as _;

use crate::{test_support::harness, ServiceError};

#[tokio::test]
async fn typing_needs_membership_and_expires_with_its_timeout() {
    let h = harness();
    let (alice, eve) = (h.user("alice").await, h.user("eve").await);
    let room = h.room(&alice, "public_chat").await;
    let ephemeral = &h.services.ephemeral;

    let stranger = ephemeral.set_typing(&eve.user_id, &room, true, None).await;
    assert!(
        matches!(stranger, Err(ServiceError::Forbidden(_))),
        "{stranger:?}"
    );

    ephemeral
        .set_typing(&alice.user_id, &room, true, Some(10_000))
        .await
        .unwrap();
    let now = h.clock.now_ms();
    let typing = ephemeral.typing.changed_since(&room, None, now);
    assert_eq!(typing, Some(vec![alice.user_id.clone()]));

    let before = ephemeral.typing.serial(now);
    h.clock.advance(10_001);
    let later = h.clock.now_ms();
    assert_eq!(
        ephemeral.typing.changed_since(&room, None, later),
        Some(vec![])
    );
    assert!(
        ephemeral.typing.serial(later) > before,
        "the expiry is a change /sync must see"
    );
}

#[tokio::test]
async fn a_timeout_is_capped_by_the_configuration() {
    let h = harness();
    let alice = h.user("alice").await;
    let room = h.room(&alice, "public_chat").await;
    let ephemeral = &h.services.ephemeral;
    ephemeral
        .set_typing(&alice.user_id, &room, true, Some(u64::MAX / 2))
        .await
        .unwrap();
    h.clock
        .advance(h.services.ctx.config.max_typing_timeout_ms + 1);
    let now = h.clock.now_ms();
    assert_eq!(
        ephemeral.typing.changed_since(&room, None, now),
        Some(vec![])
    );
}

#[tokio::test]
async fn receipts_name_a_known_event_of_the_room_and_a_known_type() {
    let h = harness();
    let alice = h.user("alice").await;
    let (room, other) = (
        h.room(&alice, "public_chat").await,
        h.room(&alice, "public_chat").await,
    );
    let elsewhere = h.say(&alice, &other, "elsewhere").await.unwrap();
    let here = h.say(&alice, &room, "here").await.unwrap();
    let ephemeral = &h.services.ephemeral;

    let wrong_room = ephemeral
        .set_receipt(&alice, &room, "m.read", &elsewhere, None)
        .await;
    assert!(
        matches!(wrong_room, Err(ServiceError::NotFound(_))),
        "{wrong_room:?}"
    );
    let wrong_type = ephemeral
        .set_receipt(&alice, &room, "m.seen", &here, None)
        .await;
    assert!(
        matches!(wrong_type, Err(ServiceError::InvalidParam(_))),
        "{wrong_type:?}"
    );
    ephemeral
        .set_receipt(&alice, &room, "m.read", &here, None)
        .await
        .unwrap();
}
