//! Conformance tests of [`RemoteDeviceStore`](crate::RemoteDeviceStore): the cached device lists
//! of other servers' users, replaced whole, patched only at the expected stream ID, forgotten.

use myelin_core::StreamPos;

use super::{device, user};
use crate::{RemoteDevice, RemoteDeviceChange, RemoteDeviceList, RemoteSigningKey, Storage};

fn remote_device(id: &str, key: &str) -> RemoteDevice {
    RemoteDevice {
        device_id: device(id),
        keys_json: format!(r#"{{"device_id":"{id}","keys":{{"k":"{key}"}}}}"#),
        display_name: Some(format!("{id} name")),
    }
}

fn device_ids(list: &RemoteDeviceList) -> Vec<&str> {
    list.devices.iter().map(|d| d.device_id.as_str()).collect()
}

pub async fn remote_device_lists_are_cached_and_patched(store: &dyn Storage) {
    let bob = user("@bob:remote.example");
    let carol = user("@carol:remote.example");
    let users = [bob.clone(), carol.clone()];
    assert!(store.remote_device_lists(&users).await.unwrap().is_empty());
    // Nothing cached: neither an update nor a signing key is applied.
    let add = RemoteDeviceChange::Upsert(remote_device("PHONE", "p1"));
    assert_eq!(
        store
            .apply_remote_device_change(&bob, 0, 1, &add)
            .await
            .unwrap(),
        None
    );
    assert_eq!(
        store
            .set_remote_signing_key(&bob, RemoteSigningKey::Master, "{}")
            .await
            .unwrap(),
        None
    );

    let before = store.current_stream_pos().await.unwrap();
    let list = RemoteDeviceList {
        user_id: bob.clone(),
        stream_id: 7,
        master_key: Some(r#"{"usage":["master"]}"#.into()),
        self_signing_key: None,
        devices: vec![remote_device("LAPTOP", "l1"), remote_device("DESK", "d1")],
        fetched_pos: StreamPos(0),
    };
    let pos = store.replace_remote_device_list(&list).await.unwrap();
    assert!(pos > before);
    let changes = store.device_list_changes(before, pos).await.unwrap();
    assert_eq!(changes, vec![bob.clone()], "a replaced list is a change");
    let cached = store.remote_device_lists(&users).await.unwrap();
    assert_eq!(cached.len(), 1);
    assert_eq!(cached[0].stream_id, 7);
    assert_eq!(cached[0].fetched_pos, pos);
    assert_eq!(cached[0].master_key, list.master_key);
    assert_eq!(device_ids(&cached[0]), ["DESK", "LAPTOP"]);
    assert_eq!(cached[0].devices[1], remote_device("LAPTOP", "l1"));

    // An update applies only at the expected stream ID.
    let stale = store.apply_remote_device_change(&bob, 6, 8, &add).await;
    assert_eq!(stale.unwrap(), None);
    let applied = store.apply_remote_device_change(&bob, 7, 8, &add).await;
    let applied = applied.unwrap().expect("applied at stream ID 7");
    assert!(applied > pos);
    let delete = RemoteDeviceChange::Delete(device("DESK"));
    assert!(store
        .apply_remote_device_change(&bob, 8, 9, &delete)
        .await
        .unwrap()
        .is_some());
    let renamed = RemoteDeviceChange::Upsert(remote_device("PHONE", "p2"));
    assert!(store
        .apply_remote_device_change(&bob, 9, 10, &renamed)
        .await
        .unwrap()
        .is_some());
    let signing = store
        .set_remote_signing_key(&bob, RemoteSigningKey::SelfSigning, r#"{"ssk":1}"#)
        .await
        .unwrap();
    assert!(signing.is_some());
    let cached = store.remote_device_lists(&users).await.unwrap();
    assert_eq!(cached[0].stream_id, 10);
    assert_eq!(device_ids(&cached[0]), ["LAPTOP", "PHONE"]);
    assert_eq!(cached[0].devices[1], remote_device("PHONE", "p2"));
    assert_eq!(cached[0].self_signing_key.as_deref(), Some(r#"{"ssk":1}"#));
    assert_eq!(
        cached[0].fetched_pos, pos,
        "patches keep the fetch position"
    );

    // A second fetch replaces everything; forgetting drops the list and its devices.
    let carol_list = RemoteDeviceList {
        user_id: carol.clone(),
        stream_id: 1,
        master_key: None,
        self_signing_key: None,
        devices: vec![remote_device("C1", "c")],
        fetched_pos: StreamPos(0),
    };
    store.replace_remote_device_list(&carol_list).await.unwrap();
    let refetched = RemoteDeviceList {
        devices: vec![remote_device("NEW", "n")],
        ..list.clone()
    };
    store.replace_remote_device_list(&refetched).await.unwrap();
    let cached = store.remote_device_lists(&users).await.unwrap();
    assert_eq!(cached.len(), 2);
    assert_eq!(device_ids(&cached[0]), ["NEW"]);
    assert_eq!(cached[0].self_signing_key, None);
    assert_eq!(device_ids(&cached[1]), ["C1"]);
    store
        .forget_remote_device_lists(std::slice::from_ref(&bob))
        .await
        .unwrap();
    let cached = store.remote_device_lists(&users).await.unwrap();
    assert_eq!(cached.len(), 1);
    assert_eq!(cached[0].user_id, carol);
    assert_eq!(
        store
            .apply_remote_device_change(&bob, 7, 8, &add)
            .await
            .unwrap(),
        None,
        "a forgotten list takes no updates"
    );
}

/// A cached list of `user_id` with one device.
fn one_device_list(user_id: &str) -> RemoteDeviceList {
    RemoteDeviceList {
        user_id: user(user_id),
        stream_id: 1,
        master_key: None,
        self_signing_key: None,
        devices: vec![remote_device("D", "k")],
        fetched_pos: StreamPos(0),
    }
}

pub async fn remote_device_lists_go_when_no_room_is_shared(store: &dyn Storage) {
    let local = ruma::server_name!("localhost");
    let (alice, bob, carol, dave) = (
        "@alice:localhost",
        "@bob:remote.example",
        "@carol:remote.example",
        "@dave:remote.example",
    );
    // Bob shares a room with alice; carol is joined only where no local user is; dave is in
    // no room at all.
    let mut shared = super::TestRoom::create(store, "!shared:localhost", alice, "sh").await;
    shared.member(store, bob, bob, "join").await;
    let mut theirs = super::TestRoom::create(store, "!theirs:remote.example", carol, "th").await;
    theirs.member(store, alice, alice, "invite").await;
    for u in [bob, carol, dave] {
        store
            .replace_remote_device_list(&one_device_list(u))
            .await
            .unwrap();
    }
    let everyone = [user(bob), user(carol), user(dave), user(alice)];
    assert!(store
        .forget_unshared_remote_device_lists(&[], local)
        .await
        .unwrap()
        .is_empty());
    let gone = store
        .forget_unshared_remote_device_lists(&everyone, local)
        .await
        .unwrap();
    assert_eq!(gone, vec![user(carol), user(dave)]);
    let kept = store.remote_device_lists(&everyone).await.unwrap();
    assert_eq!(kept.len(), 1);
    assert_eq!(kept[0].user_id, user(bob));

    // Alice leaves: bob shares nothing with us any more.
    shared.member(store, alice, alice, "leave").await;
    let gone = store
        .forget_unshared_remote_device_lists(&everyone, local)
        .await
        .unwrap();
    assert_eq!(gone, vec![user(bob)]);
    assert!(store
        .remote_device_lists(&everyone)
        .await
        .unwrap()
        .is_empty());
}

/// A local user's chain of `m.device_list_update`s: each update's ID is past the previous one
/// (even at the same stream position) and at least the position asked for; users are apart.
pub async fn device_list_update_ids_chain_per_user(store: &dyn Storage) {
    let alice = user("@alice:localhost");
    let bob = user("@bob:localhost");
    assert_eq!(store.device_list_stream_id(&alice).await.unwrap(), None);
    assert_eq!(
        store.next_device_list_stream_id(&alice, 10).await.unwrap(),
        (None, 10)
    );
    // Two updates at one position (devices deleted together) still get two IDs.
    assert_eq!(
        store.next_device_list_stream_id(&alice, 10).await.unwrap(),
        (Some(10), 11)
    );
    assert_eq!(
        store.next_device_list_stream_id(&alice, 40).await.unwrap(),
        (Some(11), 40)
    );
    assert_eq!(store.device_list_stream_id(&alice).await.unwrap(), Some(40));
    assert_eq!(
        store.next_device_list_stream_id(&bob, 12).await.unwrap(),
        (None, 12)
    );
    assert_eq!(store.device_list_stream_id(&alice).await.unwrap(), Some(40));
    assert_eq!(store.device_list_stream_id(&bob).await.unwrap(), Some(12));
}
