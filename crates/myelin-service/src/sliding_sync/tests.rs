//! Sliding sync's own decisions: list order, ranges and counts, filters, required state, what an
//! incremental response holds, and connection positions.

use std::{collections::HashSet, sync::Arc};

use myelin_core::StreamPos;
use ruma::{OwnedRoomId, OwnedUserId};
use serde_json::{json, Value};

use super::{
    candidates::{direct_rooms_of, RoomFacts},
    connection::{ConnState, ConnectionStore, StoreLimits},
    lists,
    request::{ListFilters, SlidingSyncRequest},
    response::SlidingSyncResponse,
};
use crate::{
    accounts::Authed,
    rooms::Membership,
    test_support::{harness, Harness},
    ServiceError,
};

fn room_id(n: u32) -> OwnedRoomId {
    OwnedRoomId::try_from(format!("!r{n}:test.local")).unwrap()
}

fn facts(n: u32, bump: i64) -> RoomFacts {
    RoomFacts {
        room_id: room_id(n),
        membership: Membership::Join,
        bump_stamp: bump,
        is_dm: false,
        is_encrypted: false,
        room_type: None,
    }
}

fn request(body: Value) -> SlidingSyncRequest {
    serde_json::from_value(body).expect("a valid request")
}

/// A list named `all` over every room, with this range and timeline limit.
fn list_request(range: (u64, u64), timeline_limit: u64) -> SlidingSyncRequest {
    request(json!({
        "lists": { "all": {
            "ranges": [[range.0, range.1]],
            "timeline_limit": timeline_limit,
            "required_state": [["m.room.name", ""], ["m.room.member", "$LAZY"]],
        }},
    }))
}

async fn sync(
    h: &Harness,
    who: &Authed,
    pos: Option<&str>,
    req: SlidingSyncRequest,
) -> Result<SlidingSyncResponse, ServiceError> {
    h.services.sliding_sync.sync(who, pos, 0, req).await
}

fn bodies(response: &SlidingSyncResponse, room: &OwnedRoomId) -> Vec<String> {
    response.rooms[room]
        .timeline
        .iter()
        .filter_map(|e| e["content"]["body"].as_str().map(str::to_owned))
        .collect()
}

#[test]
fn lists_sort_by_bump_stamp_and_slice_inclusive_ranges() {
    let rooms = [facts(1, 10), facts(2, 30), facts(3, 20), facts(4, 30)];
    let refs: Vec<&RoomFacts> = rooms.iter().collect();
    let mut sorted = refs.clone();
    lists::sort(&mut sorted);
    let order: Vec<_> = sorted.iter().map(|r| r.room_id.clone()).collect();
    // Latest bump first; equal stamps by room ID.
    assert_eq!(order, vec![room_id(2), room_id(4), room_id(3), room_id(1)]);

    assert_eq!(
        lists::select(&sorted, &[(1, 2)]),
        vec![room_id(4), room_id(3)]
    );
    // Overlapping ranges give each room once; a range past the end stops at the end.
    assert_eq!(
        lists::select(&sorted, &[(0, 1), (1, 2), (3, 99)]),
        vec![room_id(2), room_id(4), room_id(3), room_id(1)]
    );
    assert!(lists::select(&sorted, &[(10, 20)]).is_empty());
}

#[test]
fn filters_all_must_hold() {
    let mut dm = facts(1, 1);
    dm.is_dm = true;
    let mut encrypted_space = facts(2, 2);
    encrypted_space.is_encrypted = true;
    encrypted_space.room_type = Some("m.space".into());
    let mut invite = facts(3, 3);
    invite.membership = Membership::Invite;
    let none = HashSet::new();
    let filter = |f: Value| -> ListFilters { serde_json::from_value(f).unwrap() };

    let dms = filter(json!({ "is_dm": true }));
    assert!(lists::passes(&dm, &dms, &none));
    assert!(!lists::passes(&invite, &dms, &none));
    let not_dms = filter(json!({ "is_dm": false }));
    assert!(!lists::passes(&dm, &not_dms, &none));

    let encrypted = filter(json!({ "is_encrypted": true }));
    assert!(lists::passes(&encrypted_space, &encrypted, &none));
    assert!(!lists::passes(&dm, &encrypted, &none));

    let invites = filter(json!({ "is_invite": true }));
    assert!(lists::passes(&invite, &invites, &none));
    assert!(!lists::passes(&dm, &invites, &none));

    // `null` stands for rooms without a type; `not_room_types` wins.
    let plain = filter(json!({ "room_types": [null] }));
    assert!(lists::passes(&dm, &plain, &none));
    assert!(!lists::passes(&encrypted_space, &plain, &none));
    let spaces_not = filter(json!({ "room_types": ["m.space"], "not_room_types": ["m.space"] }));
    assert!(!lists::passes(&encrypted_space, &spaces_not, &none));

    let in_space = filter(json!({ "spaces": ["!space:test.local"] }));
    let children: HashSet<OwnedRoomId> = [room_id(1)].into();
    assert!(lists::passes(&dm, &in_space, &children));
    assert!(!lists::passes(&invite, &in_space, &children));
}

#[test]
fn plans_combine_lists_and_subscriptions() {
    let req = request(json!({
        "lists": {
            "a": { "ranges": [[0, 1]], "timeline_limit": 1, "required_state": [["m.room.name", ""]] },
            "b": { "ranges": [[0, 0]], "timeline_limit": 5, "required_state": [["m.room.topic", ""], ["m.room.name", ""]] },
        },
        "room_subscriptions": {
            "!r3:test.local": { "timeline_limit": 20, "required_state": [["m.room.pinned_events", ""]] },
            "!unknown:test.local": { "timeline_limit": 20 },
        },
    }));
    let rooms = [facts(1, 3), facts(2, 2), facts(3, 1)];
    let refs: Vec<&RoomFacts> = rooms.iter().collect();
    let selected = lists::compute(&req.lists, &refs, &HashSet::new());
    assert_eq!(selected.rooms["a"], vec![room_id(1), room_id(2)]);
    assert_eq!(selected.rooms["b"], vec![room_id(1)]);
    let (r1, r2, r3) = (room_id(1), room_id(2), room_id(3));
    let known: HashSet<&OwnedRoomId> = [&r1, &r2, &r3].into();
    let plans = lists::relevant(&req.lists, &selected, &req.room_subscriptions, &known);
    // A subscription to a room without a membership is not looked at.
    assert_eq!(plans.len(), 3);
    let none = HashSet::new();
    let wants = |r: &OwnedRoomId, t: &str| plans[r].required_state.wants(t, "", "@a:x", &none);
    assert_eq!(plans[&r1].timeline_limit, 5);
    assert!(wants(&r1, "m.room.name") && wants(&r1, "m.room.topic"));
    assert_eq!(plans[&r2].timeline_limit, 1);
    assert!(wants(&r2, "m.room.name") && !wants(&r2, "m.room.topic"));
    assert_eq!(plans[&r3].timeline_limit, 20);
    assert!(wants(&r3, "m.room.pinned_events") && !wants(&r3, "m.room.name"));
    // The same combination, sent again in another order, is the same plan.
    assert_ne!(plans[&r1].fingerprint, plans[&r2].fingerprint);
    let reordered = request(json!({
        "lists": { "a": { "ranges": [[0, 0]], "timeline_limit": 5, "required_state": [["m.room.name", ""], ["m.room.topic", ""]] } },
    }));
    let again = lists::compute(&reordered.lists, &refs, &HashSet::new());
    let again = lists::relevant(&reordered.lists, &again, &Default::default(), &known);
    assert_eq!(again[&r1].fingerprint, plans[&r1].fingerprint);
}

#[test]
fn direct_rooms_come_from_m_direct_and_skip_garbage() {
    let content = json!({
        "@bob:test.local": ["!a:test.local", 5, "not a room"],
        "@carol:test.local": ["!b:test.local"],
        "@dan:test.local": "!c:test.local",
    });
    let rooms = direct_rooms_of(Some(&content));
    let want: HashSet<OwnedRoomId> = ["!a:test.local", "!b:test.local"]
        .into_iter()
        .map(|r| OwnedRoomId::try_from(r).unwrap())
        .collect();
    assert_eq!(rooms, want);
    assert!(direct_rooms_of(None).is_empty());
}

#[test]
fn positions_name_one_version_of_one_connection() {
    let store = ConnectionStore::new(StoreLimits::default());
    let alice: (OwnedUserId, _) = ("@alice:test.local".try_into().unwrap(), "DEV".into());
    let state = Arc::new(ConnState::default());
    let record = |conn: &str, base: Option<u64>, at: i64| {
        store.record(&alice, conn, base, StreamPos(at), 0, state.clone())
    };
    let first = record("room-list", None, 5);
    let other = record("encryption", None, 5);
    let v1 = store
        .resume(&alice, "room-list", Some(&first))
        .unwrap()
        .unwrap();
    assert_eq!(v1.stream, StreamPos(5));
    // A position belongs to its connection only.
    assert!(matches!(
        store.resume(&alice, "room-list", Some(&other)),
        Err(ServiceError::UnknownPos)
    ));
    // A lost response: the same position again is fine.
    let second = record("room-list", Some(v1.id()), 7);
    assert!(store.resume(&alice, "room-list", Some(&first)).is_ok());
    // Once the client used a later position, earlier ones are gone.
    let v2 = store
        .resume(&alice, "room-list", Some(&second))
        .unwrap()
        .unwrap();
    assert_eq!(v2.stream, StreamPos(7));
    assert!(matches!(
        store.resume(&alice, "room-list", Some(&first)),
        Err(ServiceError::UnknownPos)
    ));
    // Garbage and positions of another boot are unknown; no position is a new connection.
    for bad in ["", "x", "abc_1", "_1", &format!("{second}0")] {
        assert!(
            matches!(
                store.resume(&alice, "room-list", Some(bad)),
                Err(ServiceError::UnknownPos)
            ),
            "{bad}"
        );
    }
    assert!(store.resume(&alice, "room-list", None).unwrap().is_none());
}

#[test]
fn connections_are_bounded_per_device_and_in_total() {
    let limits = StoreLimits {
        per_device: 2,
        total: 3,
        versions: 8,
    };
    let store = ConnectionStore::new(limits);
    let device =
        |d: &str| -> (OwnedUserId, _) { ("@alice:test.local".try_into().unwrap(), d.into()) };
    let state = Arc::new(ConnState::default());
    let a = device("A");
    let a1 = store.record(&a, "one", None, StreamPos(1), 0, state.clone());
    let a2 = store.record(&a, "two", None, StreamPos(1), 0, state.clone());
    // Using `one` makes `two` the device's least recently used connection.
    assert!(store.resume(&a, "one", Some(&a1)).is_ok());
    store.record(&a, "three", None, StreamPos(1), 0, state.clone());
    assert!(matches!(
        store.resume(&a, "two", Some(&a2)),
        Err(ServiceError::UnknownPos)
    ));
    assert!(store.resume(&a, "one", Some(&a1)).is_ok());
    assert_eq!(store.total(), 2);
    // Two more devices go past the total: the least recently used device goes.
    let b = device("B");
    let b1 = store.record(&b, "one", None, StreamPos(1), 0, state.clone());
    let c = device("C");
    store.record(&c, "one", None, StreamPos(1), 0, state.clone());
    assert!(store.total() <= 3);
    assert!(matches!(
        store.resume(&a, "one", Some(&a1)),
        Err(ServiceError::UnknownPos)
    ));
    assert!(store.resume(&b, "one", Some(&b1)).is_ok());
}

#[tokio::test]
async fn a_list_orders_rooms_by_latest_message_and_counts_them() {
    let h = harness();
    let alice = h.user("alice").await;
    let mut rooms = Vec::new();
    for _ in 0..3 {
        rooms.push(h.room(&alice, "private_chat").await);
    }
    // The first room gets the latest message: it goes to the top.
    h.say(&alice, &rooms[0], "latest").await.unwrap();

    let first = sync(&h, &alice, None, list_request((0, 1), 1))
        .await
        .unwrap();
    assert_eq!(first.lists["all"].count, 3);
    let sent: HashSet<_> = first.rooms.keys().cloned().collect();
    let want: HashSet<_> = [rooms[0].clone(), rooms[2].clone()].into();
    assert_eq!(sent, want, "the two most recently bumped rooms");
    let top = &first.rooms[&rooms[0]];
    assert_eq!(top.initial, Some(true));
    assert_eq!(bodies(&first, &rooms[0]), vec!["latest"]);
    assert!(top.limited);
    assert!(top.bump_stamp > first.rooms[&rooms[2]].bump_stamp);
    assert_eq!(top.joined_count, Some(1));
}

#[tokio::test]
async fn an_incremental_response_holds_only_what_is_new() {
    let h = harness();
    let (alice, bob) = (h.user("alice").await, h.user("bob").await);
    let room = h.room(&alice, "public_chat").await;
    h.join(&bob, &room).await.unwrap();
    h.say(&alice, &room, "before").await.unwrap();
    let first = sync(&h, &alice, None, list_request((0, 9), 1))
        .await
        .unwrap();
    assert_eq!(bodies(&first, &room), vec!["before"]);

    // Nothing new: the room is not in the response.
    let idle = sync(&h, &alice, Some(&first.pos), list_request((0, 9), 1))
        .await
        .unwrap();
    assert!(idle.rooms.is_empty(), "{:?}", idle.rooms);

    h.say(&bob, &room, "new").await.unwrap();
    let next = sync(&h, &alice, Some(&idle.pos), list_request((0, 9), 1))
        .await
        .unwrap();
    let update = &next.rooms[&room];
    assert_eq!(bodies(&next, &room), vec!["new"]);
    assert_eq!(update.initial, None);
    assert_eq!(update.num_live, Some(1));
    assert!(!update.limited);
    // The first timeline needed only alice's member event; bob's comes with his message, once.
    let members: Vec<&str> = update
        .required_state
        .iter()
        .filter(|e| e["type"] == "m.room.member")
        .filter_map(|e| e["state_key"].as_str())
        .collect();
    assert_eq!(members, vec![bob.user_id.as_str()]);
    h.say(&bob, &room, "again").await.unwrap();
    let again = sync(&h, &alice, Some(&next.pos), list_request((0, 9), 1))
        .await
        .unwrap();
    assert!(
        again.rooms[&room].required_state.is_empty(),
        "bob's member event is not sent twice"
    );
}

#[tokio::test]
async fn a_longer_timeline_limit_sends_the_history_again() {
    let h = harness();
    let alice = h.user("alice").await;
    let room = h.room(&alice, "private_chat").await;
    for body in ["one", "two", "three"] {
        h.say(&alice, &room, body).await.unwrap();
    }
    let first = sync(&h, &alice, None, list_request((0, 0), 1))
        .await
        .unwrap();
    assert_eq!(bodies(&first, &room), vec!["three"]);
    let subscribed = request(json!({
        "lists": { "all": { "ranges": [[0, 0]], "timeline_limit": 1 } },
        "room_subscriptions": { room.as_str(): { "timeline_limit": 3 } },
    }));
    let more = sync(&h, &alice, Some(&first.pos), subscribed)
        .await
        .unwrap();
    let update = &more.rooms[&room];
    assert_eq!(bodies(&more, &room), vec!["one", "two", "three"]);
    assert_eq!(update.initial, None);
    assert!(update.unstable_expanded_timeline);
    assert!(update.prev_batch.is_some());
}

/// The types of a room's `required_state` in a response.
fn state_types(response: &SlidingSyncResponse, room: &OwnedRoomId) -> Vec<String> {
    let mut types: Vec<String> = response.rooms[room]
        .required_state
        .iter()
        .filter_map(|e| e["type"].as_str().map(str::to_owned))
        .collect();
    types.sort();
    types
}

#[tokio::test]
async fn a_wider_required_state_sends_only_what_it_adds() {
    let h = harness();
    let alice = h.user("alice").await;
    let room = h.room(&alice, "private_chat").await;
    h.services
        .rooms
        .send_state(&alice, &room, "m.room.topic", "", json!({ "topic": "T" }))
        .await
        .unwrap();
    let with_state = |state: Value| {
        request(json!({
            "lists": { "all": { "ranges": [[0, 0]], "timeline_limit": 1, "required_state": state } },
        }))
    };
    let first = sync(&h, &alice, None, with_state(json!([["m.room.create", ""]])))
        .await
        .unwrap();
    assert_eq!(state_types(&first, &room), vec!["m.room.create"]);

    let wider = json!([
        ["m.room.create", ""],
        ["m.room.topic", ""],
        ["m.room.join_rules", ""]
    ]);
    let next = sync(&h, &alice, Some(&first.pos), with_state(wider.clone()))
        .await
        .unwrap();
    let update = &next.rooms[&room];
    assert_eq!(update.initial, None);
    assert!(
        update.timeline.is_empty(),
        "no new events: {:?}",
        update.timeline
    );
    // The create event the client holds is not sent again.
    assert_eq!(
        state_types(&next, &room),
        vec!["m.room.join_rules", "m.room.topic"]
    );

    // The same request again: nothing new.
    let same = sync(&h, &alice, Some(&next.pos), with_state(wider))
        .await
        .unwrap();
    assert!(same.rooms.is_empty(), "{:?}", same.rooms);

    // Narrower: nothing to add, so the room is not sent.
    let narrower = sync(
        &h,
        &alice,
        Some(&same.pos),
        with_state(json!([["m.room.topic", ""]])),
    )
    .await
    .unwrap();
    assert!(narrower.rooms.is_empty(), "{:?}", narrower.rooms);
}

#[tokio::test]
async fn required_state_wildcards_and_me() {
    let h = harness();
    let alice = h.user("alice").await;
    let room = h.room(&alice, "private_chat").await;
    h.services
        .rooms
        .send_state(&alice, &room, "m.room.name", "", json!({ "name": "Named" }))
        .await
        .unwrap();
    let req = request(json!({
        "room_subscriptions": { room.as_str(): {
            "timeline_limit": 0,
            "required_state": [["m.room.member", "$ME"], ["*", ""]],
        }},
    }));
    let response = sync(&h, &alice, None, req).await.unwrap();
    let update = &response.rooms[&room];
    assert_eq!(update.name.as_deref(), Some("Named"));
    assert!(update.timeline.is_empty());
    let types: HashSet<&str> = update
        .required_state
        .iter()
        .filter_map(|e| e["type"].as_str())
        .collect();
    for t in [
        "m.room.create",
        "m.room.name",
        "m.room.join_rules",
        "m.room.member",
    ] {
        assert!(types.contains(t), "{t} in {types:?}");
    }
}

#[tokio::test]
async fn an_unknown_pos_is_refused() {
    let h = harness();
    let alice = h.user("alice").await;
    let refused = sync(&h, &alice, Some("nothing_1"), list_request((0, 1), 1)).await;
    assert!(
        matches!(refused, Err(ServiceError::UnknownPos)),
        "{refused:?}"
    );
    let first = sync(&h, &alice, None, list_request((0, 1), 1))
        .await
        .unwrap();
    let other_conn = request(json!({ "conn_id": "other" }));
    let refused = sync(&h, &alice, Some(&first.pos), other_conn).await;
    assert!(
        matches!(refused, Err(ServiceError::UnknownPos)),
        "{refused:?}"
    );
}

#[tokio::test]
async fn dm_filter_reads_m_direct() {
    let h = harness();
    let (alice, bob) = (h.user("alice").await, h.user("bob").await);
    let dm = h.room(&alice, "trusted_private_chat").await;
    let group = h.room(&alice, "private_chat").await;
    h.services
        .users
        .set_account_data(
            &alice.user_id,
            None,
            "m.direct",
            json!({ bob.user_id.as_str(): [dm.as_str()] }),
        )
        .await
        .unwrap();
    let req = request(json!({
        "lists": { "dms": { "ranges": [[0, 9]], "timeline_limit": 0, "filters": { "is_dm": true } } },
    }));
    let response = sync(&h, &alice, None, req).await.unwrap();
    assert_eq!(response.lists["dms"].count, 1);
    assert_eq!(response.rooms[&dm].is_dm, Some(true));
    assert!(!response.rooms.contains_key(&group));
}

#[tokio::test]
async fn a_profile_change_is_no_new_start_but_a_join_after_an_invite_is() {
    let h = harness();
    let (alice, bob) = (h.user("alice").await, h.user("bob").await);
    let room = h.room(&alice, "private_chat").await;
    let first = sync(&h, &alice, None, list_request((0, 9), 1))
        .await
        .unwrap();
    assert_eq!(first.rooms[&room].initial, Some(true));

    let membership = &h.services.membership;
    membership
        .set_profile_field(&alice.user_id, "displayname", Some("Alice"))
        .await
        .unwrap();
    let renamed = sync(&h, &alice, Some(&first.pos), list_request((0, 9), 1))
        .await
        .unwrap();
    let update = &renamed.rooms[&room];
    assert_eq!(update.initial, None, "a new displayname is no new start");
    assert!(update
        .required_state
        .iter()
        .any(|e| e["content"]["displayname"] == "Alice"));

    // Bob, invited, then joined: the room comes afresh.
    let bobs = sync(&h, &bob, None, list_request((0, 9), 1)).await.unwrap();
    membership
        .invite(&alice.user_id, &room, &bob.user_id, None)
        .await
        .unwrap();
    let invited = sync(&h, &bob, Some(&bobs.pos), list_request((0, 9), 1))
        .await
        .unwrap();
    assert!(invited.rooms[&room].invite_state.is_some());
    h.join(&bob, &room).await.unwrap();
    let joined = sync(&h, &bob, Some(&invited.pos), list_request((0, 9), 1))
        .await
        .unwrap();
    let update = &joined.rooms[&room];
    assert_eq!(update.initial, Some(true));
    assert!(update.invite_state.is_none());
    assert_eq!(update.joined_count, Some(2));
}

#[tokio::test]
async fn ignored_users_messages_and_invites_are_hidden() {
    let h = harness();
    let (alice, bob) = (h.user("alice").await, h.user("bob").await);
    let room = h.room(&alice, "public_chat").await;
    h.join(&bob, &room).await.unwrap();
    let bobs_room = h.room(&bob, "private_chat").await;
    h.services
        .users
        .set_account_data(
            &alice.user_id,
            None,
            "m.ignored_user_list",
            json!({ "ignored_users": { bob.user_id.as_str(): {} } }),
        )
        .await
        .unwrap();
    h.services
        .membership
        .invite(&bob.user_id, &bobs_room, &alice.user_id, None)
        .await
        .unwrap();
    h.say(&alice, &room, "from alice").await.unwrap();
    h.say(&bob, &room, "from bob").await.unwrap();
    let response = sync(&h, &alice, None, list_request((0, 9), 5))
        .await
        .unwrap();
    assert_eq!(bodies(&response, &room), vec!["from alice"]);
    assert!(
        !response.rooms.contains_key(&bobs_room),
        "bob's invite is hidden"
    );
    assert_eq!(response.lists["all"].count, 1);
}

#[tokio::test]
async fn timeline_events_carry_their_bundled_edits() {
    let h = harness();
    let alice = h.user("alice").await;
    let room = h.room(&alice, "private_chat").await;
    let original = h.say(&alice, &room, "typo").await.unwrap();
    let edit = json!({
        "msgtype": "m.text", "body": "* fixed",
        "m.new_content": { "msgtype": "m.text", "body": "fixed" },
        "m.relates_to": { "rel_type": "m.replace", "event_id": original },
    });
    h.services
        .rooms
        .send_message(&alice, &room, "m.room.message", "edit", edit)
        .await
        .unwrap();
    let response = sync(&h, &alice, None, list_request((0, 9), 5))
        .await
        .unwrap();
    let timeline = &response.rooms[&room].timeline;
    let first = timeline
        .iter()
        .find(|e| e["event_id"] == original.as_str())
        .expect("the original in the timeline");
    assert_eq!(
        first["unsigned"]["m.relations"]["m.replace"]["content"]["m.new_content"]["body"], "fixed",
        "{first}"
    );
}

/// `required_state` of a joined room comes from current state in memory: it must read as the
/// stored events formatted do, a redacted state event with its `redacted_because` included.
#[tokio::test]
async fn required_state_from_memory_reads_as_the_stored_events() {
    let h = harness();
    let alice = h.user("alice").await;
    let room = h.room(&alice, "private_chat").await;
    let rooms = &h.services.rooms;
    let topic = rooms
        .send_state(
            &alice,
            &room,
            "m.room.topic",
            "",
            json!({ "topic": "secret" }),
        )
        .await
        .unwrap();
    let redaction = rooms
        .redact(&alice, &room, &topic, "r1", Some("oops"))
        .await
        .unwrap();
    rooms
        .send_state(&alice, &room, "m.room.name", "", json!({ "name": "Named" }))
        .await
        .unwrap();
    let req = request(json!({
        "room_subscriptions": { room.as_str(): {
            "timeline_limit": 1,
            "required_state": [
                ["m.room.topic", ""], ["m.room.name", ""], ["m.room.create", ""],
                ["m.room.member", "$ME"], ["m.room.member", "$LAZY"],
            ],
        }},
    }));
    let response = sync(&h, &alice, None, req).await.unwrap();
    let sent = &response.rooms[&room].required_state;
    assert_eq!(state_types(&response, &room).len(), 4, "{sent:?}");
    let storage = h.services.rooms.ctx.storage.clone();
    for event in sent {
        let id = ruma::OwnedEventId::try_from(event["event_id"].as_str().unwrap()).unwrap();
        let stored = storage.get_events(&[id]).await.unwrap();
        let want = h
            .services
            .history
            .format_events(&stored, None)
            .await
            .unwrap();
        let without_age = |e: &Value| {
            let mut e = e.clone();
            e["unsigned"].as_object_mut().unwrap().remove("age");
            e
        };
        assert_eq!(without_age(event), without_age(&want[0]));
    }
    let redacted = sent
        .iter()
        .find(|e| e["type"] == "m.room.topic")
        .expect("the redacted topic");
    assert_eq!(redacted["content"], json!({}));
    assert_eq!(
        redacted["unsigned"]["redacted_because"]["event_id"],
        redaction.as_str()
    );
    // State loaded afresh from storage knows the redaction too.
    let loaded = crate::rooms::RoomState::load(storage.as_ref(), &room)
        .await
        .unwrap();
    let entry = loaded
        .get(&ruma::events::StateEventType::RoomTopic, "")
        .unwrap();
    assert_eq!(entry.redacted_by.as_ref(), Some(&redaction));
}
