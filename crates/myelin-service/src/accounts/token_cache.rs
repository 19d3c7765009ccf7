//! The access tokens resolved recently, by their hash, so that an authenticated request does not
//! query storage for its token. What storage said is kept whole (user, device, expiry and the
//! account's guest, lock and suspension flags): the expiry is checked at every use, and every
//! change to a user's sessions or flags (logout, device deletion, password change with logout,
//! refresh, deactivation, lock, suspension, guest upgrade) forgets all of that user's entries at
//! once, after the change is stored.
//!
//! A lookup that missed and read storage before such a change may finish after it: an epoch,
//! moved on by every forgetting, keeps that stale answer out (it is stored only if no user was
//! forgotten while it was read).

use std::collections::{HashMap, HashSet};
use std::sync::Mutex;

use myelin_storage::TokenOwner;
use ruma::{OwnedUserId, UserId};

/// How many tokens are kept by default; past it, an arbitrary entry makes room.
pub const DEFAULT_MAX_TOKENS: usize = 100_000;

/// The cache; one per [`Accounts`](super::Accounts).
pub(crate) struct TokenCache {
    inner: Mutex<Inner>,
    max: usize,
}

#[derive(Default)]
struct Inner {
    by_hash: HashMap<String, TokenOwner>,
    /// The hashes of `by_hash` per user, to forget a user's tokens at once.
    by_user: HashMap<OwnedUserId, HashSet<String>>,
    /// Moved on by every forgetting; see the module documentation.
    epoch: u64,
}

impl TokenCache {
    pub(crate) fn new(max: usize) -> TokenCache {
        TokenCache {
            inner: Mutex::new(Inner::default()),
            max: max.max(1),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        // A panic while holding the lock leaves the maps consistent (each step is one insert
        // or remove), so a poisoned lock is still usable.
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The owner of the token with hash `hash`, if cached.
    pub(crate) fn get(&self, hash: &str) -> Option<TokenOwner> {
        self.lock().by_hash.get(hash).cloned()
    }

    /// The epoch to pass to [`insert`](Self::insert), taken before reading storage.
    pub(crate) fn epoch(&self) -> u64 {
        self.lock().epoch
    }

    /// Keeps `owner` for `hash`, unless a user was forgotten since `epoch` was taken (the
    /// answer may then be stale).
    pub(crate) fn insert(&self, hash: String, owner: TokenOwner, epoch: u64) {
        let mut inner = self.lock();
        if inner.epoch != epoch {
            return;
        }
        if inner.by_hash.len() >= self.max && !inner.by_hash.contains_key(&hash) {
            inner.evict_one();
        }
        inner
            .by_user
            .entry(owner.user_id.clone())
            .or_default()
            .insert(hash.clone());
        inner.by_hash.insert(hash, owner);
    }

    /// Forgets every token of `user_id` (and keeps out answers read before this call).
    pub(crate) fn forget_user(&self, user_id: &UserId) {
        let mut inner = self.lock();
        inner.epoch = inner.epoch.wrapping_add(1);
        if let Some(hashes) = inner.by_user.remove(user_id) {
            for hash in hashes {
                inner.by_hash.remove(&hash);
            }
        }
    }

    /// How many tokens are kept.
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.lock().by_hash.len()
    }
}

impl Inner {
    /// Removes one entry, whichever the map yields first.
    fn evict_one(&mut self) {
        let Some((hash, user)) = self
            .by_hash
            .iter()
            .next()
            .map(|(h, o)| (h.clone(), o.user_id.clone()))
        else {
            return;
        };
        self.by_hash.remove(&hash);
        if let Some(set) = self.by_user.get_mut(&user) {
            set.remove(&hash);
            if set.is_empty() {
                self.by_user.remove(&user);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn owner(user: &str, device: &str) -> TokenOwner {
        TokenOwner {
            user_id: UserId::parse(user).expect("user ID"),
            device_id: device.into(),
            expires_at_ms: None,
            is_guest: false,
            locked: false,
            suspended: false,
        }
    }

    #[test]
    fn forgetting_a_user_drops_only_their_tokens() {
        let cache = TokenCache::new(10);
        let e = cache.epoch();
        cache.insert("a1".into(), owner("@a:x", "A1"), e);
        cache.insert("a2".into(), owner("@a:x", "A2"), e);
        cache.insert("b1".into(), owner("@b:x", "B1"), e);
        assert_eq!(cache.get("a2"), Some(owner("@a:x", "A2")));
        cache.forget_user(&UserId::parse("@a:x").expect("user ID"));
        assert_eq!(cache.get("a1"), None);
        assert_eq!(cache.get("a2"), None);
        assert_eq!(cache.get("b1"), Some(owner("@b:x", "B1")));
    }

    #[test]
    fn an_answer_read_before_a_forgetting_is_not_kept() {
        let cache = TokenCache::new(10);
        let before = cache.epoch();
        cache.forget_user(&UserId::parse("@a:x").expect("user ID"));
        cache.insert("a1".into(), owner("@a:x", "A1"), before);
        assert_eq!(cache.get("a1"), None);
        cache.insert("a1".into(), owner("@a:x", "A1"), cache.epoch());
        assert!(cache.get("a1").is_some());
    }

    #[test]
    fn size_is_bounded() {
        let cache = TokenCache::new(3);
        for i in 0..10 {
            cache.insert(format!("t{i}"), owner("@a:x", "D"), cache.epoch());
            assert!(cache.len() <= 3);
        }
        assert_eq!(cache.len(), 3);
        // The index follows evictions: forgetting the user empties the cache.
        cache.forget_user(&UserId::parse("@a:x").expect("user ID"));
        assert_eq!(cache.len(), 0);
        assert!(cache.lock().by_user.is_empty());
    }
}
