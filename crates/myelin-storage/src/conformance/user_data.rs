//! Conformance tests of [`UserDataStore`](crate::UserDataStore): account data, receipts,
//! presence, filters and reports.

use super::*;
use crate::{ReportRecord, ReportTarget};

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

/// Reports of events, rooms and users come back newest first, with their target, reason and
/// score as given.
pub async fn reports(store: &dyn Storage) {
    assert!(store.reports(10).await.unwrap().is_empty());
    let event_report = ReportRecord {
        reporter: user("@alice:localhost"),
        target: ReportTarget::Event {
            room_id: room("!r:localhost"),
            event_id: event("$e"),
        },
        reason: Some("spam".into()),
        score: Some(-100),
        created_ms: 1,
    };
    let room_report = ReportRecord {
        reporter: user("@bob:localhost"),
        target: ReportTarget::Room(room("!r:localhost")),
        reason: None,
        score: None,
        created_ms: 2,
    };
    let user_report = ReportRecord {
        reporter: user("@alice:localhost"),
        target: ReportTarget::User(user("@mallory:remote.example")),
        reason: Some("rude".into()),
        score: None,
        created_ms: 3,
    };
    for report in [&event_report, &room_report, &user_report] {
        store.add_report(report.clone()).await.unwrap();
    }
    assert_eq!(
        store.reports(10).await.unwrap(),
        vec![user_report.clone(), room_report, event_report]
    );
    assert_eq!(store.reports(1).await.unwrap(), vec![user_report]);
}
