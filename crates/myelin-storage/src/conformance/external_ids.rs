//! Conformance tests of [`ExternalIdStore`](crate::ExternalIdStore): SSO identities mapped to
//! accounts.

use super::*;
use crate::NewUserWithExternalId;

pub async fn sso_logins_map_to_one_account(store: &dyn Storage) {
    let new = |user_id: &str| super::new_user(user_id, None);
    assert_eq!(
        store.user_for_external_id("corp", "sub-1").await.unwrap(),
        None
    );
    let created = store
        .create_user_with_external_id(new("@erin:localhost"), "corp", "sub-1")
        .await
        .unwrap();
    assert_eq!(created, NewUserWithExternalId::Created);
    assert!(store
        .get_user(&user("@erin:localhost"))
        .await
        .unwrap()
        .is_some());
    assert_eq!(
        store.user_for_external_id("corp", "sub-1").await.unwrap(),
        Some(user("@erin:localhost"))
    );
    // The same subject at another provider is another identity.
    assert_eq!(
        store.user_for_external_id("other", "sub-1").await.unwrap(),
        None
    );
    // The identity is taken: neither the account nor a mapping is written.
    let taken = store
        .create_user_with_external_id(new("@frank:localhost"), "corp", "sub-1")
        .await
        .unwrap();
    assert_eq!(taken, NewUserWithExternalId::ExternalIdInUse);
    assert!(store
        .get_user(&user("@frank:localhost"))
        .await
        .unwrap()
        .is_none());
    // The user ID is taken: the identity stays unmapped.
    let in_use = store
        .create_user_with_external_id(new("@erin:localhost"), "corp", "sub-2")
        .await
        .unwrap();
    assert_eq!(in_use, NewUserWithExternalId::UserInUse);
    assert_eq!(
        store.user_for_external_id("corp", "sub-2").await.unwrap(),
        None
    );
}
