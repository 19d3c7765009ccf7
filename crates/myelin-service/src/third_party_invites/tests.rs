//! Claiming third-party invites without HTTP: an onbind with a proof signed by the identity
//! server's key becomes an invite; a forged proof, another user's proof, a token the room does
//! not know, or one sent by someone else is refused, and nothing is sent twice.

use ruma::serde::{base64::Standard, Base64};
use ruma::signatures::{self, Ed25519KeyPair};
use ruma::{CanonicalJsonObject, OwnedRoomId, OwnedUserId, UserId};
use serde_json::{json, Value};

use super::{OnBind, OnBindInvite};
use crate::rooms::Membership;
use crate::test_support::{harness, Harness};
use crate::ServiceError;

const IS: &str = "is.example.org";

fn key() -> Ed25519KeyPair {
    Ed25519KeyPair::from_der(&Ed25519KeyPair::generate(), "0".into()).expect("key")
}

fn signed_by(key: &Ed25519KeyPair, mxid: &UserId, token: &str) -> Value {
    let mut object: CanonicalJsonObject =
        serde_json::from_value(json!({ "mxid": mxid, "token": token })).expect("canonical");
    signatures::sign_json(IS, key, &mut object).expect("signs");
    serde_json::to_value(&object).expect("JSON")
}

/// A room of alice's with a third-party invite of token `tok` whose key is `key`'s.
async fn room_with_invite(h: &Harness, key: &Ed25519KeyPair) -> (OwnedRoomId, OwnedUserId) {
    let alice = h.user("alice").await;
    let room = h.room(&alice, "private_chat").await;
    let public = Base64::<Standard>::new(key.public_key().to_vec()).encode();
    h.services
        .rooms
        .send_state(
            &alice,
            &room,
            "m.room.third_party_invite",
            "tok",
            json!({
                "display_name": "b...@e...",
                "key_validity_url": "https://is.example.org/_matrix/identity/v2/pubkey/isvalid",
                "public_key": public,
                "public_keys": [{ "public_key": public, "key_validity_url": "https://is.example.org/_matrix/identity/v2/pubkey/isvalid" }],
            }),
        )
        .await
        .unwrap();
    (room, alice.user_id.clone())
}

fn onbind(room: &OwnedRoomId, sender: &UserId, mxid: &UserId, signed: Value) -> OnBind {
    OnBind {
        mxid: mxid.to_owned(),
        invites: vec![OnBindInvite {
            room_id: room.clone(),
            sender: sender.to_owned(),
            mxid: mxid.to_owned(),
            signed,
        }],
    }
}

#[tokio::test]
async fn a_signed_proof_becomes_an_invite_the_user_can_accept() {
    let h = harness();
    let is_key = key();
    let (room, alice) = room_with_invite(&h, &is_key).await;
    let bob = h.user("bob").await;
    let tpi = &h.services.third_party_invites;

    let proof = signed_by(&is_key, &bob.user_id, "tok");
    tpi.on_bind(onbind(&room, &alice, &bob.user_id, proof.clone()))
        .await
        .unwrap();
    let state = h.services.rooms.room_state(&room).await.unwrap();
    assert_eq!(state.membership(&bob.user_id), Some(Membership::Invite));
    let member = state
        .content(
            &ruma::events::StateEventType::RoomMember,
            bob.user_id.as_str(),
        )
        .unwrap();
    assert_eq!(member["third_party_invite"]["display_name"], "b...@e...");
    assert_eq!(member["third_party_invite"]["signed"], proof);
    // A retried notification changes nothing.
    tpi.on_bind(onbind(&room, &alice, &bob.user_id, proof))
        .await
        .unwrap();
    h.join(&bob, &room).await.unwrap();
    let state = h.services.rooms.room_state(&room).await.unwrap();
    assert_eq!(state.membership(&bob.user_id), Some(Membership::Join));
}

#[tokio::test]
async fn forged_or_misdirected_proofs_are_refused() {
    let h = harness();
    let is_key = key();
    let (room, alice) = room_with_invite(&h, &is_key).await;
    let (bob, carol) = (h.user("bob").await, h.user("carol").await);
    let tpi = &h.services.third_party_invites;
    let forbidden = |r: Result<(), ServiceError>, what: &str| {
        assert!(
            matches!(r, Err(ServiceError::Forbidden(_))),
            "{what}: {r:?}"
        );
    };

    let forged = signed_by(&key(), &bob.user_id, "tok");
    forbidden(
        tpi.on_bind(onbind(&room, &alice, &bob.user_id, forged))
            .await,
        "signed by another key",
    );
    // carol's proof handed in for bob.
    let carols = signed_by(&is_key, &carol.user_id, "tok");
    forbidden(
        tpi.on_bind(onbind(&room, &alice, &bob.user_id, carols))
            .await,
        "another user's proof",
    );
    let unknown = signed_by(&is_key, &bob.user_id, "other");
    forbidden(
        tpi.on_bind(onbind(&room, &alice, &bob.user_id, unknown))
            .await,
        "a token the room does not know",
    );
    let proof = signed_by(&is_key, &bob.user_id, "tok");
    forbidden(
        tpi.on_bind(onbind(&room, &carol.user_id, &bob.user_id, proof))
            .await,
        "claimed as sent by someone else",
    );
    let state = h.services.rooms.room_state(&room).await.unwrap();
    assert_eq!(state.membership(&bob.user_id), None);
}
