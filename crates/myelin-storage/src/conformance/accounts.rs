//! Conformance tests of [`AccountStore`](crate::AccountStore): users, sessions and devices.

use super::*;

pub async fn users_and_sessions(store: &dyn Storage) {
    let alice = user("@alice:localhost");
    let mut new_alice = new_user("@alice:localhost", Some("hash1"));
    new_alice.displayname = Some("Alice".into());
    assert!(
        store.create_user(new_alice).await.unwrap(),
        "new user is created"
    );
    let mut duplicate = new_user("@alice:localhost", Some("other"));
    duplicate.is_admin = true;
    assert!(
        !store.create_user(duplicate).await.unwrap(),
        "taken ID is refused"
    );
    let expected = UserRecord {
        user_id: alice.clone(),
        password_hash: Some("hash1".into()),
        is_admin: false,
        deactivated: false,
        created_ms: 1_000,
        displayname: Some("Alice".into()),
        avatar_url: None,
        is_guest: false,
        locked: false,
        suspended: false,
    };
    assert_eq!(
        store.get_user(&alice).await.unwrap(),
        Some(expected.clone()),
        "refused duplicate wrote nothing"
    );
    assert_eq!(
        store.get_user(&user("@nobody:localhost")).await.unwrap(),
        None
    );
    assert!(store
        .create_user(NewUser {
            is_admin: true,
            ..new_user("@admin:localhost", None)
        })
        .await
        .unwrap());
    let admin = store
        .get_user(&user("@admin:localhost"))
        .await
        .unwrap()
        .unwrap();
    assert!(admin.is_admin);
    assert_eq!(admin.password_hash, None);

    store.set_password_hash(&alice, "hash2").await.unwrap();
    store.set_displayname(&alice, None).await.unwrap();
    store
        .set_avatar_url(&alice, Some("mxc://localhost/abc"))
        .await
        .unwrap();
    let updated = store.get_user(&alice).await.unwrap().unwrap();
    assert_eq!(
        updated,
        UserRecord {
            password_hash: Some("hash2".into()),
            displayname: None,
            avatar_url: Some("mxc://localhost/abc".into()),
            ..expected
        }
    );
    store
        .set_displayname(&alice, Some("Alice 2"))
        .await
        .unwrap();
    store.set_avatar_url(&alice, None).await.unwrap();
    let updated = store.get_user(&alice).await.unwrap().unwrap();
    assert_eq!(updated.displayname.as_deref(), Some("Alice 2"));
    assert_eq!(updated.avatar_url, None);

    // Sessions and tokens.
    let mut first = session("@alice:localhost", "DEV1", "at1", Some("rt1"));
    first.expires_at_ms = Some(5_000);
    store.create_session(first).await.unwrap();
    let owner = |expires_at_ms| {
        Some(TokenOwner {
            user_id: alice.clone(),
            device_id: device("DEV1"),
            expires_at_ms,
            is_guest: false,
            locked: false,
            suspended: false,
        })
    };
    assert_eq!(
        store.find_access_token("at1").await.unwrap(),
        owner(Some(5_000))
    );
    assert_eq!(store.find_access_token("unknown").await.unwrap(), None);

    assert_eq!(
        store
            .refresh_session("rt1", "at2", "rt2", Some(9_000))
            .await
            .unwrap(),
        owner(Some(9_000))
    );
    assert_eq!(
        store.find_access_token("at2").await.unwrap(),
        owner(Some(9_000))
    );
    assert_eq!(
        store
            .refresh_session("rt1", "at3", "rt3", None)
            .await
            .unwrap(),
        None,
        "a refresh token works once"
    );
    assert_eq!(store.find_access_token("at3").await.unwrap(), None);
    assert_eq!(
        store
            .refresh_session("unknown", "at4", "rt4", None)
            .await
            .unwrap(),
        None
    );
    assert_eq!(
        store
            .refresh_session("rt2", "at5", "rt5", None)
            .await
            .unwrap(),
        owner(None),
        "the new refresh token works"
    );
    assert_eq!(store.find_access_token("at5").await.unwrap(), owner(None));

    // Logging in again on the same device keeps the device (and its name).
    let mut again = session("@alice:localhost", "DEV1", "at6", None);
    again.device_display_name = Some("Renamed".into());
    store.create_session(again).await.unwrap();
    assert_eq!(store.find_access_token("at6").await.unwrap(), owner(None));
    let devices = store.list_devices(&alice).await.unwrap();
    assert_eq!(devices.len(), 1);
    assert_eq!(devices[0].display_name.as_deref(), Some("DEV1 name"));

    // Deactivation removes every device and token.
    store
        .create_session(session("@alice:localhost", "DEV2", "at7", Some("rt7")))
        .await
        .unwrap();
    let bob = user("@bob:localhost");
    let both = [alice.clone(), bob.clone()];
    assert!(store.erased_users(&both).await.unwrap().is_empty());
    store.set_displayname(&alice, Some("Alice")).await.unwrap();
    store
        .set_avatar_url(&alice, Some("mxc://x/y"))
        .await
        .unwrap();
    store.deactivate_user(&alice, true).await.unwrap();
    let deactivated = store.get_user(&alice).await.unwrap().unwrap();
    assert!(deactivated.deactivated);
    // Erasure takes the profile with it.
    assert_eq!(deactivated.displayname, None);
    assert_eq!(deactivated.avatar_url, None);
    assert_eq!(
        store.erased_users(&both).await.unwrap(),
        vec![alice.clone()]
    );
    assert!(store.list_devices(&alice).await.unwrap().is_empty());
    for token in ["at1", "at2", "at5", "at6", "at7"] {
        assert_eq!(
            store.find_access_token(token).await.unwrap(),
            None,
            "{token} survived deactivation"
        );
    }
    assert_eq!(
        store
            .refresh_session("rt7", "at8", "rt8", None)
            .await
            .unwrap(),
        None
    );
    assert!(
        !store
            .get_user(&user("@admin:localhost"))
            .await
            .unwrap()
            .unwrap()
            .deactivated
    );
}

pub async fn devices(store: &dyn Storage) {
    let alice = user("@alice:localhost");
    let carol = user("@carol:localhost");
    store
        .create_user(new_user("@alice:localhost", Some("h")))
        .await
        .unwrap();
    store
        .create_user(new_user("@carol:localhost", Some("h")))
        .await
        .unwrap();
    for (dev, token) in [("DEV1", "t1"), ("DEV2", "t2"), ("DEV3", "t3")] {
        store
            .create_session(session("@alice:localhost", dev, token, None))
            .await
            .unwrap();
    }
    store
        .create_session(session("@carol:localhost", "DEV1", "c1", None))
        .await
        .unwrap();

    let mut listed: Vec<String> = store
        .list_devices(&alice)
        .await
        .unwrap()
        .into_iter()
        .map(|d| d.device_id.to_string())
        .collect();
    listed.sort();
    assert_eq!(listed, ["DEV1", "DEV2", "DEV3"]);
    let dev1 = store
        .get_device(&alice, "DEV1")
        .await
        .unwrap()
        .expect("device exists");
    assert_eq!(dev1.user_id, alice);
    assert_eq!(dev1.device_id, device("DEV1"));
    assert_eq!(dev1.display_name.as_deref(), Some("DEV1 name"));
    assert_eq!((dev1.last_seen_ms, dev1.last_seen_ip), (None, None));
    assert_eq!(store.get_device(&alice, "NOPE").await.unwrap(), None);
    assert_eq!(
        store
            .get_device(&user("@nobody:localhost"), "DEV1")
            .await
            .unwrap(),
        None
    );

    assert!(store
        .set_device_display_name(&alice, "DEV1", Some("Laptop"))
        .await
        .unwrap());
    assert!(!store
        .set_device_display_name(&alice, "NOPE", Some("x"))
        .await
        .unwrap());
    assert_eq!(
        store
            .get_device(&alice, "DEV1")
            .await
            .unwrap()
            .unwrap()
            .display_name
            .as_deref(),
        Some("Laptop")
    );
    assert!(store
        .set_device_display_name(&alice, "DEV1", None)
        .await
        .unwrap());
    assert_eq!(
        store
            .get_device(&alice, "DEV1")
            .await
            .unwrap()
            .unwrap()
            .display_name,
        None
    );
    assert_eq!(
        store
            .get_device(&carol, "DEV1")
            .await
            .unwrap()
            .unwrap()
            .display_name
            .as_deref(),
        Some("DEV1 name"),
        "devices are per user"
    );

    store
        .touch_device(&alice, "DEV2", 7_000, Some("10.0.0.1"))
        .await
        .unwrap();
    let dev2 = store.get_device(&alice, "DEV2").await.unwrap().unwrap();
    assert_eq!(
        (dev2.last_seen_ms, dev2.last_seen_ip.as_deref()),
        (Some(7_000), Some("10.0.0.1"))
    );
    store
        .touch_device(&alice, "NOPE", 7_000, None)
        .await
        .unwrap();

    store
        .delete_devices(&alice, &[device("DEV1")])
        .await
        .unwrap();
    assert_eq!(store.get_device(&alice, "DEV1").await.unwrap(), None);
    assert_eq!(store.find_access_token("t1").await.unwrap(), None);
    assert!(store.find_access_token("t2").await.unwrap().is_some());
    assert!(
        store.find_access_token("c1").await.unwrap().is_some(),
        "another user's device of the same ID stays"
    );
    store
        .delete_devices(&alice, &[device("NOPE")])
        .await
        .unwrap();

    store
        .delete_all_devices(&alice, Some("DEV3"))
        .await
        .unwrap();
    let remaining: Vec<_> = store
        .list_devices(&alice)
        .await
        .unwrap()
        .into_iter()
        .map(|d| d.device_id)
        .collect();
    assert_eq!(remaining, [device("DEV3")]);
    assert_eq!(store.find_access_token("t2").await.unwrap(), None);
    assert!(store.find_access_token("t3").await.unwrap().is_some());

    store.delete_all_devices(&alice, None).await.unwrap();
    assert!(store.list_devices(&alice).await.unwrap().is_empty());
    assert_eq!(store.find_access_token("t3").await.unwrap(), None);
    assert_eq!(store.list_devices(&carol).await.unwrap().len(), 1);
    assert!(store.find_access_token("c1").await.unwrap().is_some());
}

pub async fn guests_are_flagged_and_upgraded_once(store: &dyn Storage) {
    let guest = user("@1234567890:localhost");
    assert!(store
        .create_user(NewUser {
            is_guest: true,
            ..new_user(guest.as_str(), None)
        })
        .await
        .unwrap());
    store
        .create_session(session(guest.as_str(), "GDEV", "guest-token", None))
        .await
        .unwrap();
    let owner = store
        .find_access_token("guest-token")
        .await
        .unwrap()
        .unwrap();
    assert!(owner.is_guest, "a guest's token says so");
    assert!(store.get_user(&guest).await.unwrap().unwrap().is_guest);

    assert!(store.upgrade_guest(&guest, "hash").await.unwrap());
    let upgraded = store.get_user(&guest).await.unwrap().unwrap();
    assert!(!upgraded.is_guest);
    assert_eq!(upgraded.password_hash.as_deref(), Some("hash"));
    assert!(
        !store
            .find_access_token("guest-token")
            .await
            .unwrap()
            .unwrap()
            .is_guest
    );
    assert!(
        !store.upgrade_guest(&guest, "again").await.unwrap(),
        "a full account is not upgraded again"
    );
    assert!(!store
        .upgrade_guest(&user("@nobody:localhost"), "hash")
        .await
        .unwrap());
}

pub async fn locked_and_suspended_accounts(store: &dyn Storage) {
    let carol = user("@carol:localhost");
    assert!(store
        .create_user(new_user(carol.as_str(), Some("h")))
        .await
        .unwrap());
    store
        .create_session(session(carol.as_str(), "CDEV", "carol-token", None))
        .await
        .unwrap();
    store.set_locked(&carol, true).await.unwrap();
    let owner = store
        .find_access_token("carol-token")
        .await
        .unwrap()
        .unwrap();
    assert!(owner.locked && !owner.suspended);
    store.set_locked(&carol, false).await.unwrap();
    store.set_suspended(&carol, true).await.unwrap();
    let record = store.get_user(&carol).await.unwrap().unwrap();
    assert!(!record.locked && record.suspended);
    let owner = store
        .find_access_token("carol-token")
        .await
        .unwrap()
        .unwrap();
    assert!(!owner.locked && owner.suspended);
}

pub async fn custom_profile_fields(store: &dyn Storage) {
    let dave = user("@dave:localhost");
    assert!(store
        .create_user(new_user(dave.as_str(), None))
        .await
        .unwrap());
    assert!(store.profile_fields(&dave).await.unwrap().is_empty());
    let tz = json!("Europe/Paris");
    let pets = json!({ "cats": 2, "names": ["a", "b"] });
    store
        .set_profile_field(&dave, "m.tz", Some(&tz))
        .await
        .unwrap();
    store
        .set_profile_field(&dave, "org.example.pets", Some(&pets))
        .await
        .unwrap();
    store
        .set_profile_field(&dave, "m.tz", Some(&json!("Europe/Berlin")))
        .await
        .unwrap();
    assert_eq!(
        store.profile_fields(&dave).await.unwrap(),
        vec![
            ("m.tz".to_owned(), json!("Europe/Berlin")),
            ("org.example.pets".to_owned(), pets),
        ]
    );
    store
        .set_profile_field(&dave, "org.example.pets", None)
        .await
        .unwrap();
    assert_eq!(store.profile_fields(&dave).await.unwrap().len(), 1);
    assert!(store
        .profile_fields(&user("@nobody:localhost"))
        .await
        .unwrap()
        .is_empty());
}
