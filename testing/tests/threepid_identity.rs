//! Identity servers (issue 17) against the identity-server stub on loopback (allowed through
//! `[egress]`): binding and unbinding addresses (`/account/3pid/bind`, `/unbind`, the unbind of
//! `/delete`), remembering where each was bound, the spec's errors, and refusing identity
//! servers on private addresses; third-party invites: an invite to an unbound address becomes
//! an `m.room.third_party_invite`, the stub's onbind after a bind turns it into a membership the
//! user accepts, a bound address is invited as its user, and a forged proof is refused.

use myelin_testing::hostile::{generate_key, HostileServer};
use myelin_testing::http::{
    assert_err, assert_ok, password_auth, register, room_path, sync_until, C, PW,
};
use myelin_testing::identity::{sign_invite, IdentityStub, IS_TOKEN};
use myelin_testing::{enc, Config, TestServer};
use serde_json::{json, Value};

fn allow_stub(config: &mut Config) {
    config.egress.allow = vec!["127.0.0.1".into()];
}

fn bind_body(stub: &IdentityStub, sid: &str) -> Value {
    json!({
        "id_server": stub.name, "id_access_token": IS_TOKEN,
        "sid": sid, "client_secret": "secret",
    })
}

#[tokio::test]
async fn bind_and_unbind_go_to_the_identity_server_that_was_used() {
    let stub = IdentityStub::start().await;
    let s = TestServer::start_with(allow_stub).await;
    let alice = register(&s, "alice").await;
    let at = alice.token().expect("token");
    stub.validated_session("sid-1", "secret", "alice@example.org");

    assert_ok(
        &s.post(
            &format!("{C}/account/3pid/bind"),
            Some(at),
            &bind_body(&stub, "sid-1"),
        )
        .await,
        "bind",
    );
    assert_eq!(
        stub.bound_to("alice@example.org").as_deref(),
        Some(alice.user_id.as_str())
    );
    let bind = &stub.requests_to("/3pid/bind")[0];
    assert_eq!(bind.body["mxid"], alice.user_id.as_str());
    assert_eq!(
        bind.authorization.as_deref(),
        Some(format!("Bearer {IS_TOKEN}").as_str())
    );

    // Unbinding without id_server goes to the server the address was bound on, signed by us.
    let unbind = json!({ "medium": "email", "address": "alice@example.org" });
    let (status, body) = s
        .post(&format!("{C}/account/3pid/unbind"), Some(at), &unbind)
        .await;
    assert_eq!(
        (status.as_u16(), &body["id_server_unbind_result"]),
        (200, &json!("success"))
    );
    assert_eq!(stub.bound_to("alice@example.org"), None);
    let signed = &stub.requests_to("/3pid/unbind")[0];
    let auth = signed.authorization.as_deref().unwrap_or_default();
    assert!(auth.starts_with("X-Matrix origin="), "{auth}");
    assert!(
        auth.contains(&format!("destination=\"{}\"", stub.name)),
        "{auth}"
    );
    assert_eq!(signed.body["mxid"], alice.user_id.as_str());

    // Now nothing is remembered: no-support, and no request.
    let (status, body) = s
        .post(&format!("{C}/account/3pid/unbind"), Some(at), &unbind)
        .await;
    assert_eq!(
        (status.as_u16(), &body["id_server_unbind_result"]),
        (200, &json!("no-support"))
    );
    assert_eq!(stub.requests_to("/3pid/unbind").len(), 1);
}

#[tokio::test]
async fn delete_unbinds_from_the_remembered_identity_server() {
    let stub = IdentityStub::start().await;
    let s = TestServer::start_with(allow_stub).await;
    let bob = register(&s, "bob").await;
    let bt = bob.token().expect("token");
    stub.validated_session("sid-b", "secret", "bob@example.org");
    assert_ok(
        &s.post(
            &format!("{C}/account/3pid/bind"),
            Some(bt),
            &bind_body(&stub, "sid-b"),
        )
        .await,
        "bind",
    );
    let (status, body) = s
        .post(
            &format!("{C}/account/3pid/delete"),
            Some(bt),
            &json!({ "medium": "email", "address": "bob@example.org" }),
        )
        .await;
    assert_eq!(
        (status.as_u16(), &body["id_server_unbind_result"]),
        (200, &json!("success"))
    );
    assert_eq!(stub.bound_to("bob@example.org"), None);
    // Neither on the account nor bound anywhere any more.
    assert_err(
        &s.post(
            &format!("{C}/account/3pid/delete"),
            Some(bt),
            &json!({ "medium": "email", "address": "bob@example.org" }),
        )
        .await,
        404,
        "M_NOT_FOUND",
        "deleting an unknown address",
    );
}

#[tokio::test]
async fn deactivation_unbinds_what_was_bound() {
    let stub = IdentityStub::start().await;
    let s = TestServer::start_with(allow_stub).await;
    let erin = register(&s, "erin").await;
    let et = erin.token().expect("token");
    stub.validated_session("sid-e", "secret", "erin@example.org");
    assert_ok(
        &s.post(
            &format!("{C}/account/3pid/bind"),
            Some(et),
            &bind_body(&stub, "sid-e"),
        )
        .await,
        "bind",
    );
    let deactivate = format!("{C}/account/deactivate");
    let (_, challenge) = s.post(&deactivate, Some(et), &json!({})).await;
    let auth = password_auth(&erin.user_id, PW, Some(&challenge["session"]));
    let (status, body) = s
        .post(&deactivate, Some(et), &json!({ "auth": auth }))
        .await;
    assert_eq!(
        (status.as_u16(), &body["id_server_unbind_result"]),
        (200, &json!("success")),
        "{body}"
    );
    assert_eq!(stub.bound_to("erin@example.org"), None);
    assert_eq!(stub.requests_to("/3pid/unbind").len(), 1);
}

#[tokio::test]
async fn identity_server_errors_and_bad_parameters() {
    let stub = IdentityStub::start().await;
    let s = TestServer::start_with(allow_stub).await;
    let carol = register(&s, "carol").await;
    let ct = carol.token().expect("token");
    let bind = format!("{C}/account/3pid/bind");

    // The identity server's own error is passed on.
    assert_err(
        &s.post(&bind, Some(ct), &bind_body(&stub, "no-such-sid"))
            .await,
        404,
        "M_NO_VALID_SESSION",
        "a session the identity server does not know",
    );
    let mut wrong_token = bind_body(&stub, "sid");
    wrong_token["id_access_token"] = json!("wrong");
    assert_err(
        &s.post(&bind, Some(ct), &wrong_token).await,
        403,
        "M_UNAUTHORIZED",
        "an identity access token the identity server refuses (never a 401 of ours)",
    );
    let mut expired = bind_body(&stub, "sid");
    expired["id_access_token"] = json!("expired");
    assert_err(
        &s.post(&bind, Some(ct), &expired).await,
        403,
        "M_FORBIDDEN",
        "the identity server's M_UNKNOWN_TOKEN (not ours to pass on: clients would log out)",
    );
    for field in ["id_server", "id_access_token", "sid", "client_secret"] {
        let mut body = bind_body(&stub, "sid");
        body.as_object_mut().expect("object").remove(field);
        assert_err(
            &s.post(&bind, Some(ct), &body).await,
            400,
            "M_MISSING_PARAM",
            &format!("bind without {field}"),
        );
    }
    for bad in [
        "https://example.org",
        "example.org/path",
        "",
        "exa mple.org",
    ] {
        let mut body = bind_body(&stub, "sid");
        body["id_server"] = json!(bad);
        assert_err(
            &s.post(&bind, Some(ct), &body).await,
            400,
            "M_INVALID_PARAM",
            &format!("id_server {bad:?}"),
        );
    }
    let mut not_string = bind_body(&stub, "sid");
    not_string["sid"] = json!(5);
    assert_err(
        &s.post(&bind, Some(ct), &not_string).await,
        400,
        "M_BAD_JSON",
        "a sid that is not a string",
    );
    assert_err(
        &s.post(
            &format!("{C}/account/3pid/unbind"),
            Some(ct),
            &json!({ "medium": "email" }),
        )
        .await,
        400,
        "M_MISSING_PARAM",
        "unbind without address",
    );
    assert_err(
        &s.post(&bind, None, &bind_body(&stub, "sid")).await,
        401,
        "M_MISSING_TOKEN",
        "bind without an access token",
    );
}

#[tokio::test]
async fn identity_servers_on_private_addresses_are_refused() {
    let stub = IdentityStub::start().await;
    // No [egress] allowance: loopback is not reachable.
    let s = TestServer::start().await;
    let dave = register(&s, "dave").await;
    let dt = dave.token().expect("token");
    stub.validated_session("sid-d", "secret", "dave@example.org");
    assert_err(
        &s.post(
            &format!("{C}/account/3pid/bind"),
            Some(dt),
            &bind_body(&stub, "sid-d"),
        )
        .await,
        400,
        "M_INVALID_PARAM",
        "an identity server on loopback without [egress] allow",
    );
    assert!(stub.requests().is_empty(), "nothing reached the stub");
    assert_eq!(stub.bound_to("dave@example.org"), None);
}

fn invite_body(stub: &IdentityStub, address: &str) -> Value {
    json!({
        "id_server": stub.name, "id_access_token": IS_TOKEN,
        "medium": "email", "address": address,
    })
}

/// The content of a room's state event, or the error status.
async fn state_event(
    s: &TestServer,
    token: &str,
    room: &str,
    kind: &str,
    key: &str,
) -> (u16, Value) {
    let (status, body) = s
        .get(
            &room_path(room, &format!("state/{kind}/{}", enc(key))),
            Some(token),
        )
        .await;
    (status.as_u16(), body)
}

#[tokio::test]
async fn an_invite_to_an_unbound_address_is_claimed_once_the_address_is_bound() {
    let stub = IdentityStub::start().await;
    let s = TestServer::start_with(allow_stub).await;
    stub.notify_homeserver(s.base_url());
    let alice = register(&s, "alice").await;
    let at = alice.token().expect("token");
    let room = s
        .create_room(at, &json!({ "preset": "private_chat", "name": "Plans" }))
        .await;

    assert_ok(
        &s.post(
            &room_path(&room, "invite"),
            Some(at),
            &invite_body(&stub, "Bob@Example.org"),
        )
        .await,
        "invite an address",
    );
    let stored = &stub.requests_to("/store-invite")[0];
    assert_eq!(stored.body["address"], "bob@example.org");
    assert_eq!(stored.body["room_id"], room.as_str());
    assert_eq!(stored.body["sender"], alice.user_id.as_str());
    assert_eq!(stored.body["room_name"], "Plans");
    let (status, tpi) =
        state_event(&s, at, &room, "m.room.third_party_invite", "invite-token-1").await;
    assert_eq!(status, 200, "{tpi}");
    assert_eq!(tpi["display_name"], "a...@e...");
    assert_eq!(tpi["public_key"], stub.public_key());
    assert_eq!(tpi["public_keys"][0]["public_key"], stub.public_key());
    assert!(tpi["key_validity_url"]
        .as_str()
        .is_some_and(|u| u.ends_with("/pubkey/isvalid")));

    // Bob binds the address: the stub tells the homeserver, which issues the invite.
    let bob = register(&s, "bob").await;
    let bt = bob.token().expect("token");
    stub.validated_session("sid-b", "secret", "bob@example.org");
    assert_ok(
        &s.post(
            &format!("{C}/account/3pid/bind"),
            Some(bt),
            &bind_body(&stub, "sid-b"),
        )
        .await,
        "bind",
    );
    assert_eq!(stub.onbind_answers(), [(200, json!({}))]);
    let (status, member) = state_event(&s, at, &room, "m.room.member", &bob.user_id).await;
    assert_eq!(status, 200, "{member}");
    assert_eq!(member["membership"], "invite");
    assert_eq!(member["third_party_invite"]["display_name"], "a...@e...");
    assert_eq!(
        member["third_party_invite"]["signed"]["mxid"],
        bob.user_id.as_str()
    );
    sync_until(&s, &bob, "the invite", |sync| {
        sync["rooms"]["invite"].get(&room).is_some()
    })
    .await;
    s.join(bt, &room).await;
    let (_, member) = state_event(&s, at, &room, "m.room.member", &bob.user_id).await;
    assert_eq!(member["membership"], "join");

    // A bound address is invited as its user, without storing an invite.
    let second = s
        .create_room(at, &json!({ "preset": "private_chat" }))
        .await;
    assert_ok(
        &s.post(
            &room_path(&second, "invite"),
            Some(at),
            &invite_body(&stub, "bob@example.org"),
        )
        .await,
        "invite a bound address",
    );
    let (_, member) = state_event(&s, at, &second, "m.room.member", &bob.user_id).await;
    assert_eq!(member["membership"], "invite");
    assert!(member.get("third_party_invite").is_none(), "{member}");
    assert_eq!(stub.requests_to("/store-invite").len(), 1);
    assert_eq!(stub.requests_to("/lookup").len(), 2);
}

#[tokio::test]
async fn a_forged_onbind_is_refused() {
    let stub = IdentityStub::start().await;
    let s = TestServer::start_with(allow_stub).await;
    let alice = register(&s, "alice").await;
    let at = alice.token().expect("token");
    let bob = register(&s, "bob").await;
    let room = s
        .create_room(at, &json!({ "preset": "private_chat" }))
        .await;
    assert_ok(
        &s.post(
            &room_path(&room, "invite"),
            Some(at),
            &invite_body(&stub, "bob@example.org"),
        )
        .await,
        "invite an address",
    );
    let onbind = |signed: Value| {
        json!({
            "medium": "email", "address": "bob@example.org", "mxid": bob.user_id,
            "invites": [{
                "medium": "email", "address": "bob@example.org", "mxid": bob.user_id,
                "room_id": room, "sender": alice.user_id, "signed": signed,
            }],
        })
    };
    let forged = sign_invite(
        &stub.name,
        &generate_key("0"),
        &bob.user_id,
        "invite-token-1",
    );
    assert_err(
        &s.put("/_matrix/federation/v1/3pid/onbind", None, &onbind(forged))
            .await,
        403,
        "M_FORBIDDEN",
        "an onbind signed by another key",
    );
    let wrong_token = stub.signed(&bob.user_id, "invite-token-2");
    assert_err(
        &s.put(
            "/_matrix/federation/v1/3pid/onbind",
            None,
            &onbind(wrong_token),
        )
        .await,
        403,
        "M_FORBIDDEN",
        "an onbind for a token the room does not have",
    );
    let (status, _) = state_event(&s, at, &room, "m.room.member", &bob.user_id).await;
    assert_eq!(status, 404, "no membership for bob");
    // The genuine proof works.
    let genuine = stub.signed(&bob.user_id, "invite-token-1");
    assert_ok(
        &s.put("/_matrix/federation/v1/3pid/onbind", None, &onbind(genuine))
            .await,
        "a genuine onbind",
    );
    let (_, member) = state_event(&s, at, &room, "m.room.member", &bob.user_id).await;
    assert_eq!(member["membership"], "invite");
}

#[tokio::test]
async fn third_party_invite_errors() {
    let stub = IdentityStub::start().await;
    let s = TestServer::start_with(allow_stub).await;
    let alice = register(&s, "alice").await;
    let mallory = register(&s, "mallory").await;
    let at = alice.token().expect("token");
    let room = s
        .create_room(at, &json!({ "preset": "private_chat" }))
        .await;
    let invite = room_path(&room, "invite");

    for field in ["id_server", "id_access_token", "medium"] {
        let mut body = invite_body(&stub, "x@example.org");
        body.as_object_mut().expect("object").remove(field);
        assert_err(
            &s.post(&invite, Some(at), &body).await,
            400,
            "M_MISSING_PARAM",
            &format!("a 3PID invite without {field}"),
        );
    }
    assert_err(
        &s.post(&invite, Some(at), &json!({})).await,
        400,
        "M_BAD_JSON",
        "an invite naming nobody",
    );
    let mut phone = invite_body(&stub, "+4412345678");
    phone["medium"] = json!("msisdn");
    assert_err(
        &s.post(&invite, Some(at), &phone).await,
        400,
        "M_THREEPID_MEDIUM_NOT_SUPPORTED",
        "a phone number",
    );
    let mut bad_server = invite_body(&stub, "x@example.org");
    bad_server["id_server"] = json!("https://is.example.org");
    assert_err(
        &s.post(&invite, Some(at), &bad_server).await,
        400,
        "M_INVALID_PARAM",
        "an id_server with a scheme",
    );
    assert_err(
        &s.post(
            &invite,
            mallory.token(),
            &invite_body(&stub, "x@example.org"),
        )
        .await,
        403,
        "M_FORBIDDEN",
        "an invite by someone not in the room",
    );
    assert!(
        stub.requests().is_empty(),
        "nothing reached the identity server"
    );
    let mut wrong_token = invite_body(&stub, "x@example.org");
    wrong_token["id_access_token"] = json!("wrong");
    assert_err(
        &s.post(&invite, Some(at), &wrong_token).await,
        403,
        "M_UNAUTHORIZED",
        "an identity access token the identity server refuses (never a 401 of ours)",
    );
    assert_err(
        &s.put(
            "/_matrix/federation/v1/3pid/onbind",
            None,
            &json!({ "mxid": alice.user_id }),
        )
        .await,
        400,
        "M_BAD_JSON",
        "an onbind without invites",
    );
    assert_err(
        &s.put(
            &format!(
                "/_matrix/federation/v1/exchange_third_party_invite/{}",
                enc(&room)
            ),
            None,
            &json!({}),
        )
        .await,
        401,
        "M_UNAUTHORIZED",
        "an exchange that is not signed",
    );
}

#[tokio::test]
async fn a_third_party_invite_is_claimed_across_servers() {
    let stub = IdentityStub::start().await;
    let a = TestServer::start_federating_with(allow_stub).await;
    let b = TestServer::start_federating_with(allow_stub).await;
    stub.notify_homeserver(b.base_url());
    let alice = register(&a, "alice").await;
    let at = alice.token().expect("token");
    let room = a
        .create_room(at, &json!({ "preset": "private_chat" }))
        .await;
    assert_ok(
        &a.post(
            &room_path(&room, "invite"),
            Some(at),
            &invite_body(&stub, "carol@example.org"),
        )
        .await,
        "invite an address",
    );

    // Carol, on B, binds the address: B is not in the room, so it asks A (the inviter's server)
    // to exchange the proof for an invite, which A sends to B.
    let carol = register(&b, "carol").await;
    let ct = carol.token().expect("token");
    stub.validated_session("sid-c", "secret", "carol@example.org");
    assert_ok(
        &b.post(
            &format!("{C}/account/3pid/bind"),
            Some(ct),
            &bind_body(&stub, "sid-c"),
        )
        .await,
        "bind on B",
    );
    assert_eq!(stub.onbind_answers(), [(200, json!({}))]);
    let (status, member) = state_event(&a, at, &room, "m.room.member", &carol.user_id).await;
    assert_eq!(status, 200, "{member}");
    assert_eq!(member["membership"], "invite");
    assert_eq!(
        member["third_party_invite"]["signed"]["mxid"],
        carol.user_id.as_str()
    );
    sync_until(&b, &carol, "the invite on B", |sync| {
        sync["rooms"]["invite"].get(&room).is_some()
    })
    .await;
    b.join(ct, &room).await;
    let (_, member) = state_event(&a, at, &room, "m.room.member", &carol.user_id).await;
    assert_eq!(member["membership"], "join");
}

#[tokio::test]
async fn exchanges_from_other_servers_are_checked_before_we_sign() {
    let stub = IdentityStub::start().await;
    let a = TestServer::start_federating_with(allow_stub).await;
    let hostile = HostileServer::start().await;
    let alice = register(&a, "alice").await;
    let at = alice.token().expect("token");
    let room = a
        .create_room(at, &json!({ "preset": "private_chat" }))
        .await;
    assert_ok(
        &a.post(
            &room_path(&room, "invite"),
            Some(at),
            &invite_body(&stub, "m@example.org"),
        )
        .await,
        "invite an address",
    );
    let mallory = hostile.user("mallory");
    let exchange = |state_key: &str, sender: &str, signed: Value| {
        json!({
            "type": "m.room.member", "room_id": room, "sender": sender, "state_key": state_key,
            "content": {
                "membership": "invite",
                "displayname": "injected",
                "third_party_invite": { "display_name": "injected", "signed": signed },
            },
        })
    };
    let uri = format!(
        "/_matrix/federation/v1/exchange_third_party_invite/{}",
        enc(&room)
    );
    let send = |body: Value| {
        let (hostile, a, uri) = (&hostile, &a, &uri);
        async move { hostile.request(a, "PUT", uri, Some(&body)).await }
    };

    let forged = sign_invite(&stub.name, &generate_key("0"), &mallory, "invite-token-1");
    assert_err(
        &send(exchange(&mallory, &alice.user_id, forged)).await,
        403,
        "M_FORBIDDEN",
        "a proof signed by another key",
    );
    let for_someone_else = stub.signed("@victim:elsewhere.example", "invite-token-1");
    assert_err(
        &send(exchange(
            "@victim:elsewhere.example",
            &alice.user_id,
            for_someone_else,
        ))
        .await,
        403,
        "M_FORBIDDEN",
        "a claim for a user of another server",
    );
    let genuine = stub.signed(&mallory, "invite-token-1");
    assert_err(
        &send(exchange(&mallory, &hostile.user("boss"), genuine.clone())).await,
        400,
        "M_BAD_JSON",
        "an invite sent in the name of someone who is not ours",
    );
    let mut wrong_room = exchange(&mallory, &alice.user_id, genuine);
    wrong_room["room_id"] = json!("!other:elsewhere.example");
    assert_err(
        &send(wrong_room).await,
        400,
        "M_BAD_JSON",
        "a body for another room",
    );
    let (status, _) = state_event(&a, at, &room, "m.room.member", &mallory).await;
    assert_eq!(status, 404, "nothing was signed for mallory");
}
