//! The reports subsystem's own decisions: what may be reported, and that an event report tells
//! a stranger nothing.

use myelin_storage::ReportTarget;

use crate::{test_support::harness, ServiceError};

#[tokio::test]
async fn events_rooms_and_users_are_kept_for_administrators() {
    let h = harness();
    let (alice, bob) = (h.user("alice").await, h.user("bob").await);
    let room = h.room(&alice, "public_chat").await;
    h.join(&bob, &room).await.unwrap();
    let event = h.say(&alice, &room, "rude").await.unwrap();
    let reports = &h.services.reports;
    reports
        .report_event(&bob, &room, &event, Some("rude".into()), Some(-100))
        .await
        .unwrap();
    reports.report_room(&bob, &room, None).await.unwrap();
    reports
        .report_user(&bob, &alice.user_id, Some("mean".into()))
        .await
        .unwrap();
    let kept = h.services.ctx.storage.reports(10).await.unwrap();
    assert_eq!(kept.len(), 3);
    assert_eq!(kept[0].target, ReportTarget::User(alice.user_id.clone()));
    assert_eq!(kept[2].score, Some(-100));
    assert!(kept.iter().all(|r| r.reporter == bob.user_id));
}

#[tokio::test]
async fn a_stranger_learns_nothing_about_an_event() {
    let h = harness();
    let (alice, eve) = (h.user("alice").await, h.user("eve").await);
    let room = h.room(&alice, "private_chat").await;
    let event = h.say(&alice, &room, "secret").await.unwrap();
    let reports = &h.services.reports;
    let existing = reports.report_event(&eve, &room, &event, None, None).await;
    let missing_id = ruma::OwnedEventId::try_from("$nothing:test.local").unwrap();
    let missing = reports
        .report_event(&eve, &room, &missing_id, None, None)
        .await;
    for answer in [existing, missing] {
        assert!(
            matches!(answer, Err(ServiceError::NotFound(_))),
            "{answer:?}"
        );
    }
    let bad_score = reports
        .report_event(&alice, &room, &event, None, Some(5))
        .await;
    assert!(
        matches!(bad_score, Err(ServiceError::InvalidParam(_))),
        "{bad_score:?}"
    );
    let nobody = ruma::OwnedUserId::try_from("@nobody:test.local").unwrap();
    let unknown = reports.report_user(&alice, &nobody, None).await;
    assert!(
        matches!(unknown, Err(ServiceError::NotFound(_))),
        "{unknown:?}"
    );
    assert!(h.services.ctx.storage.reports(10).await.unwrap().is_empty());
}
