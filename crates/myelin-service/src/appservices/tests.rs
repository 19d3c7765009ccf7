//! Application services: registration files and their checks, `as_token` authentication and
//! masquerading, exclusive namespaces, timestamp massaging, the rate-limit exemption, and which
//! events and buffered items a transaction carries.

use myelin_core::StreamPos;
use ruma::{OwnedRoomAliasId, OwnedUserId, ServerName};
use serde_json::json;

use super::registration::{load_files, parse};
use crate::accounts::{RegisterOutcome, RegisterRequest};
use crate::test_support::{harness_configured, text, Harness};
use crate::{FederationConfig, ServiceError};

const BRIDGE: &str = r#"
id: whatsapp
url: null
as_token: as-secret
hs_token: hs-secret
sender_localpart: whatsappbot
rate_limited: false
protocols: ["whatsapp"]
namespaces:
  users:
    - regex: '^@whatsapp_.*:test\.local$'
      exclusive: true
  aliases:
    - regex: '^#whatsapp_.*:test\.local$'
      exclusive: true
  rooms: []
de.sorunome.msc2409.push_ephemeral: true
org.matrix.msc3202: true
io.element.msc4190: true
"#;

fn server() -> &'static ServerName {
    <&ServerName>::try_from("test.local").unwrap()
}

fn bridge_harness() -> Harness {
    harness_configured(
        FederationConfig {
            enabled: false,
            ..FederationConfig::default()
        },
        |c| {
            c.appservices = vec![parse(BRIDGE, server()).unwrap()];
            c.rate_limits.enabled = true;
        },
    )
}

fn user(id: &str) -> OwnedUserId {
    OwnedUserId::try_from(id).unwrap()
}

#[test]
fn a_bridge_registration_parses() {
    let a = parse(BRIDGE, server()).unwrap();
    assert_eq!(a.id, "whatsapp");
    assert!(a.url.is_none());
    assert_eq!(a.sender, user("@whatsappbot:test.local"));
    assert!(!a.rate_limited && a.receive_ephemeral && a.msc3202 && a.msc4190);
    assert_eq!(a.protocols, vec!["whatsapp".to_owned()]);
    assert!(a.is_exclusive_user(&user("@whatsapp_123:test.local")));
    assert!(!a.is_user_in_namespace(&user("@alice:test.local")));
    let alias = OwnedRoomAliasId::try_from("#whatsapp_g1:test.local").unwrap();
    assert!(a.is_exclusive_alias(&alias));
    assert!(format!("{a:?}").contains("<secret>") && !format!("{a:?}").contains("as-secret"));
}

#[test]
fn registration_problems_are_named() {
    let bad_regex = BRIDGE.replace("'^@whatsapp_.*:test\\.local$'", "'^@wa_(:test'");
    let err = parse(&bad_regex, server()).unwrap_err();
    assert!(err.contains("regex"), "{err}");
    let no_token = BRIDGE.replace("as_token: as-secret", "as_token: ''");
    assert!(parse(&no_token, server()).is_err());
    let bad_url = BRIDGE.replace("url: null", "url: ftp://bridge");
    assert!(parse(&bad_url, server()).unwrap_err().contains("url"));
    assert!(parse("id: [", server())
        .unwrap_err()
        .contains("not a valid registration"));
}

#[test]
fn files_with_duplicates_or_overlaps_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let write = |name: &str, text: &str| {
        let path = dir.path().join(name);
        std::fs::write(&path, text).unwrap();
        path
    };
    let first = write("a.yaml", BRIDGE);
    let same_id = write("b.yaml", &BRIDGE.replace("whatsappbot", "otherbot"));
    let err = load_files(&[first.clone(), same_id], server()).unwrap_err();
    assert!(err.contains("id \"whatsapp\""), "{err}");
    assert!(err.contains("token"), "{err}");
    assert!(err.contains("overlap"), "{err}");
    let other = BRIDGE
        .replace("id: whatsapp", "id: signal")
        .replace("as-secret", "as2")
        .replace("hs-secret", "hs2")
        .replace("whatsapp", "signal");
    let other = write("c.yaml", &other);
    assert_eq!(load_files(&[first, other], server()).unwrap().len(), 2);
    let missing = dir.path().join("missing.yaml");
    assert!(load_files(&[missing], server())
        .unwrap_err()
        .contains("cannot read"));
}

#[tokio::test]
async fn as_token_authenticates_and_masquerades_within_the_namespace() {
    let h = bridge_harness();
    let accounts = &h.services.accounts;
    let bot = accounts
        .authenticate_request("as-secret", None, None)
        .await
        .unwrap();
    assert_eq!(bot.user_id, user("@whatsappbot:test.local"));
    assert_eq!(bot.appservice.as_deref(), Some("whatsapp"));
    let unregistered = accounts
        .authenticate_request("as-secret", Some("@whatsapp_1:test.local"), None)
        .await;
    assert!(
        matches!(unregistered, Err(ServiceError::Forbidden(_))),
        "{unregistered:?}"
    );
    let req = RegisterRequest {
        username: Some("whatsapp_1".into()),
        inhibit_login: true,
        ..RegisterRequest::default()
    };
    accounts
        .register_appservice_user("whatsapp", req)
        .await
        .unwrap();
    let puppet = accounts
        .authenticate_request("as-secret", Some("@whatsapp_1:test.local"), None)
        .await
        .unwrap();
    assert_eq!(puppet.user_id, user("@whatsapp_1:test.local"));
    let outside = accounts
        .authenticate_request("as-secret", Some("@alice:test.local"), None)
        .await;
    assert!(
        matches!(outside, Err(ServiceError::Forbidden(_))),
        "{outside:?}"
    );
    let unknown = accounts.authenticate_request("nope", None, None).await;
    assert!(matches!(unknown, Err(ServiceError::UnknownToken { .. })));
    // The hs_token is not a client credential.
    let hs = accounts.authenticate_request("hs-secret", None, None).await;
    assert!(matches!(hs, Err(ServiceError::UnknownToken { .. })));
    // MSC3202: a device of the user, never an invented one.
    let no_device = accounts
        .authenticate_request("as-secret", Some("@whatsapp_1:test.local"), Some("DEV"))
        .await;
    assert!(matches!(no_device, Err(ServiceError::Forbidden(_))));
}

#[tokio::test]
async fn exclusive_users_are_only_registered_by_their_appservice() {
    let h = bridge_harness();
    let accounts = &h.services.accounts;
    let taken = accounts.check_username_available("whatsapp_9").await;
    assert!(
        matches!(taken, Err(ServiceError::Exclusive(_))),
        "{taken:?}"
    );
    let req = RegisterRequest {
        username: Some("whatsapp_9".into()),
        inhibit_login: true,
        ..RegisterRequest::default()
    };
    let outcome = accounts
        .register_appservice_user("whatsapp", req.clone())
        .await
        .unwrap();
    assert!(matches!(outcome, RegisterOutcome::NoLogin(u) if u == "@whatsapp_9:test.local"));
    let outside = RegisterRequest {
        username: Some("alice".into()),
        ..req
    };
    let refused = accounts.register_appservice_user("whatsapp", outside).await;
    assert!(
        matches!(refused, Err(ServiceError::Exclusive(_))),
        "{refused:?}"
    );
    // Logging the puppet in gives it a device of its own.
    let session = accounts
        .login_appservice(
            Some("whatsapp"),
            "whatsapp_9",
            Some("PUPPETDEV"),
            None,
            false,
        )
        .await
        .unwrap();
    assert_eq!(session.device_id.as_str(), "PUPPETDEV");
    let masqueraded = accounts
        .authenticate_request(
            "as-secret",
            Some("@whatsapp_9:test.local"),
            Some("PUPPETDEV"),
        )
        .await
        .unwrap();
    assert_eq!(masqueraded.device_id.as_str(), "PUPPETDEV");
}

#[tokio::test]
async fn exclusive_aliases_are_refused_to_others() {
    let h = bridge_harness();
    let rooms = &h.services.rooms;
    let alias = OwnedRoomAliasId::try_from("#whatsapp_g1:test.local").unwrap();
    assert!(matches!(
        rooms.check_alias_namespace(&alias, None),
        Err(ServiceError::Exclusive(_))
    ));
    rooms
        .check_alias_namespace(&alias, Some("whatsapp"))
        .unwrap();
    let free = OwnedRoomAliasId::try_from("#lobby:test.local").unwrap();
    rooms.check_alias_namespace(&free, None).unwrap();
}

#[tokio::test]
async fn appservices_massage_timestamps_and_skip_rate_limits() {
    let h = bridge_harness();
    let alice = h.user("alice").await;
    let room = h.room(&alice, "public_chat").await;
    let bot = h
        .services
        .accounts
        .authenticate_request("as-secret", None, None)
        .await
        .unwrap();
    h.services
        .accounts
        .register_appservice_user(
            "whatsapp",
            RegisterRequest {
                username: Some("whatsappbot".into()),
                inhibit_login: true,
                ..Default::default()
            },
        )
        .await
        .unwrap();
    h.join(&bot, &room).await.unwrap();
    let rooms = &h.services.rooms;
    let id = rooms
        .send_message_at(
            &bot,
            &room,
            "m.room.message",
            "t1",
            text("old"),
            Some(1_234),
        )
        .await
        .unwrap();
    let stored = h
        .services
        .ctx
        .storage
        .get_event(&id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(u64::from(stored.pdu.origin_server_ts.0), 1_234);
    let id = rooms
        .send_message_at(
            &alice,
            &room,
            "m.room.message",
            "t2",
            text("mine"),
            Some(1_234),
        )
        .await
        .unwrap();
    let stored = h
        .services
        .ctx
        .storage
        .get_event(&id)
        .await
        .unwrap()
        .unwrap();
    assert_ne!(
        u64::from(stored.pdu.origin_server_ts.0),
        1_234,
        "only appservices massage"
    );
    // Far past the default message burst: `rate_limited: false` exempts the appservice.
    for i in 0..40 {
        rooms
            .send_message(&bot, &room, "m.room.message", &format!("b{i}"), text("x"))
            .await
            .unwrap();
    }
}

#[tokio::test]
async fn transactions_carry_interesting_events_and_buffered_items() {
    let h = bridge_harness();
    let start = h.services.ctx.storage.current_stream_pos().await.unwrap();
    let alice = h.user("alice").await;
    let bob = h.user("bob").await;
    let private = h.room(&bob, "private_chat").await;
    h.say(&bob, &private, "not for the bridge").await.unwrap();
    let portal = h.room(&alice, "public_chat").await;
    h.services
        .accounts
        .register_appservice_user(
            "whatsapp",
            RegisterRequest {
                username: Some("whatsapp_1".into()),
                inhibit_login: true,
                ..Default::default()
            },
        )
        .await
        .unwrap();
    let puppet = h
        .services
        .accounts
        .authenticate_request("as-secret", Some("@whatsapp_1:test.local"), None)
        .await
        .unwrap();
    h.join(&puppet, &portal).await.unwrap();
    h.say(&alice, &portal, "hello bridge").await.unwrap();
    let a = h.services.ctx.appservices.by_id("whatsapp").unwrap();
    let appservices = &h.services.appservices;
    let now = h.services.ctx.storage.current_stream_pos().await.unwrap();
    let (events, reached) = appservices.events_for(&a, start, now).await.unwrap();
    assert_eq!(reached, now);
    let bodies: Vec<_> = events
        .iter()
        .filter_map(|e| e.pdu.content_value()["body"].as_str().map(str::to_owned))
        .collect();
    assert_eq!(
        bodies,
        vec!["hello bridge".to_owned()],
        "only the portal's messages"
    );
    assert!(events.iter().all(|e| e.pdu.room_id == portal));
    // Nothing new after `now`.
    let (none, _) = appservices.events_for(&a, now, now).await.unwrap();
    assert!(none.is_empty());
    assert!(now > StreamPos(0));

    // Typing in the portal is buffered for the bridge (MSC2409); its keys too (MSC3202).
    h.services
        .ephemeral
        .set_typing(&alice.user_id, &portal, true, Some(10_000))
        .await
        .unwrap();
    h.services
        .ctx
        .appservices
        .note_key_change(&puppet.user_id, &ruma::OwnedDeviceId::from("PDEV"));
    let buffered = h.services.ctx.appservices.take_buffered("whatsapp");
    let body = appservices
        .transaction_body(&a, events, buffered)
        .await
        .unwrap();
    let sent = body["events"].as_array().unwrap();
    assert!(sent.iter().any(|e| e["content"]["body"] == "hello bridge"));
    assert!(sent
        .iter()
        .any(|e| e["type"] == "m.room.member" && e["state_key"] == "@whatsapp_1:test.local"));
    assert_eq!(body["ephemeral"][0]["type"], "m.typing");
    assert_eq!(
        body["de.sorunome.msc2409.ephemeral"][0]["content"]["user_ids"],
        json!([alice.user_id])
    );
    assert_eq!(
        body["org.matrix.msc3202.device_one_time_keys_count"]["@whatsapp_1:test.local"]["PDEV"]
            ["signed_curve25519"],
        0
    );
    assert!(h
        .services
        .ctx
        .appservices
        .take_buffered("whatsapp")
        .is_empty());
}

#[tokio::test]
async fn a_reload_replaces_the_registrations() {
    let h = bridge_harness();
    let accounts = &h.services.accounts;
    assert!(accounts
        .authenticate_request("as-secret", None, None)
        .await
        .is_ok());
    let signal = BRIDGE
        .replace("id: whatsapp", "id: signal")
        .replace("as-secret", "as-signal")
        .replace("hs-secret", "hs-signal")
        .replace("whatsapp", "signal");
    h.services
        .appservices
        .reload(vec![parse(&signal, server()).unwrap()]);
    let old = accounts.authenticate_request("as-secret", None, None).await;
    assert!(
        matches!(old, Err(ServiceError::UnknownToken { .. })),
        "{old:?}"
    );
    let new = accounts
        .authenticate_request("as-signal", None, None)
        .await
        .unwrap();
    assert_eq!(new.appservice.as_deref(), Some("signal"));
    // The whatsapp namespace is free again, signal's is taken.
    accounts
        .check_username_available("whatsapp_2")
        .await
        .unwrap();
    let taken = accounts.check_username_available("signal_2").await;
    assert!(matches!(taken, Err(ServiceError::Exclusive(_))));
}
