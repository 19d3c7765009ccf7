//! The identity-server pieces that need no server: the hashed lookup form of an address.

use super::lookup_hash;

#[test]
fn lookup_hashes_follow_the_spec_example() {
    // Spec: Identity Service API, "Client behaviour" of hashed lookups.
    assert_eq!(
        lookup_hash("alice@example.com", "email", "matrixrocks"),
        "4kenr7N9drpCJ4AfalmlGQVsOn3o2RHjkADUpXJWZUc"
    );
}
