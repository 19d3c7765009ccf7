//! Wakes `/sync` long-polls after a commit, keyed by user (and, for readers peeking into a room
//! they are not in, by room).
//!
//! The service calls [`Notifier::notify`] with the users a committed change concerns, and
//! [`Notifier::notify_room`] with the room a new event landed in; each waiting long-poll holds a
//! [`Waiter`] and wakes within a scheduler tick. Nothing here polls storage.

use std::{collections::HashMap, sync::Mutex};

use ruma::{OwnedRoomId, OwnedUserId, RoomId, UserId};
use tokio::sync::watch;

/// Per-user wake-up channels, plus one "closing" flag that ends every wait at shutdown.
pub struct Notifier {
    channels: Channels<OwnedUserId>,
    rooms: Channels<OwnedRoomId>,
    /// Bumped by every notification, whoever it concerns (the application-service workers,
    /// which look at all events, wait on it).
    any: watch::Sender<u64>,
    closing: watch::Sender<bool>,
}

impl Default for Notifier {
    fn default() -> Self {
        Notifier {
            channels: Channels::default(),
            rooms: Channels::default(),
            any: watch::channel(0).0,
            closing: watch::channel(false).0,
        }
    }
}

/// Wake-up channels by key; a channel lives while someone waits on it.
struct Channels<K>(Mutex<HashMap<K, watch::Sender<u64>>>);

impl<K> Default for Channels<K> {
    fn default() -> Self {
        Channels(Mutex::new(HashMap::new()))
    }
}

impl<K: std::hash::Hash + Eq> Channels<K> {
    fn subscribe(&self, key: K) -> watch::Receiver<u64> {
        let mut channels = self.0.lock().unwrap_or_else(|p| p.into_inner());
        channels
            .entry(key)
            .or_insert_with(|| watch::channel(0).0)
            .subscribe()
    }

    fn notify<'a, Q>(&self, keys: impl IntoIterator<Item = &'a Q>)
    where
        K: std::borrow::Borrow<Q>,
        Q: std::hash::Hash + Eq + ?Sized + 'a,
    {
        let mut channels = self.0.lock().unwrap_or_else(|p| p.into_inner());
        for key in keys {
            let Some(tx) = channels.get(key) else {
                continue;
            };
            if tx.receiver_count() == 0 {
                channels.remove(key);
            } else {
                tx.send_modify(|v| *v = v.wrapping_add(1));
            }
        }
    }
}

/// A subscription for one user; [`Waiter::changed`] resolves on the next notification.
pub struct Waiter {
    rx: watch::Receiver<u64>,
    closing: watch::Receiver<bool>,
}

impl Waiter {
    /// Waits for the next notification after the subscription (or the previous `changed`), or
    /// until the server starts shutting down.
    pub async fn changed(&mut self) {
        if self.is_closing() {
            return;
        }
        // An error means the sender was dropped, which only happens when no waiter existed;
        // treat it as a wake-up so the caller re-checks.
        tokio::select! {
            _ = self.rx.changed() => {}
            _ = self.closing.wait_for(|closing| *closing) => {}
        }
    }

    /// True once [`Notifier::close`] was called: long-polls should answer now.
    pub fn is_closing(&self) -> bool {
        *self.closing.borrow()
    }
}

impl Notifier {
    pub fn new() -> Self {
        Self::default()
    }

    /// Subscribes before reading, so a change committed between the read and the wait is not missed.
    pub fn subscribe(&self, user_id: &UserId) -> Waiter {
        Waiter {
            rx: self.channels.subscribe(user_id.to_owned()),
            closing: self.closing.subscribe(),
        }
    }

    /// Like [`Notifier::subscribe`], for new events in one room (readers peeking into a
    /// `world_readable` room are not members, so no user notification reaches them).
    pub fn subscribe_room(&self, room_id: &RoomId) -> Waiter {
        Waiter {
            rx: self.rooms.subscribe(room_id.to_owned()),
            closing: self.closing.subscribe(),
        }
    }

    /// A subscription to every notification, whichever users or room it names.
    pub fn subscribe_all(&self) -> Waiter {
        Waiter {
            rx: self.any.subscribe(),
            closing: self.closing.subscribe(),
        }
    }

    /// Wakes every waiter, now and in future, for shutdown: open long-polls answer at once
    /// instead of holding the graceful shutdown for their whole timeout.
    pub fn close(&self) {
        self.closing.send_replace(true);
    }

    /// Wakes every waiter of the given users.
    pub fn notify<'a>(&self, users: impl IntoIterator<Item = &'a UserId>) {
        self.any.send_modify(|v| *v = v.wrapping_add(1));
        self.channels.notify(users);
    }

    /// Wakes every waiter on new events of the room.
    pub fn notify_room(&self, room_id: &RoomId) {
        self.any.send_modify(|v| *v = v.wrapping_add(1));
        self.rooms.notify([room_id]);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[tokio::test]
    async fn wakes_only_the_notified_user() {
        let n = Notifier::new();
        let alice: OwnedUserId = "@alice:localhost".try_into().unwrap();
        let bob: OwnedUserId = "@bob:localhost".try_into().unwrap();
        let mut wa = n.subscribe(&alice);
        let mut wb = n.subscribe(&bob);
        n.notify([&*alice]);
        tokio::time::timeout(Duration::from_secs(1), wa.changed())
            .await
            .expect("alice woken");
        assert!(
            tokio::time::timeout(Duration::from_millis(50), wb.changed())
                .await
                .is_err()
        );
    }

    #[tokio::test]
    async fn subscribe_all_wakes_on_any_user() {
        let n = Notifier::new();
        let alice: OwnedUserId = "@alice:localhost".try_into().unwrap();
        let mut all = n.subscribe_all();
        n.notify([&*alice]);
        tokio::time::timeout(Duration::from_secs(1), all.changed())
            .await
            .expect("woken");
    }

    #[tokio::test]
    async fn room_waiters_wake_on_their_room_only() {
        let n = Notifier::new();
        let lobby: OwnedRoomId = "!lobby:localhost".try_into().unwrap();
        let other: OwnedRoomId = "!other:localhost".try_into().unwrap();
        let mut w = n.subscribe_room(&lobby);
        n.notify_room(&other);
        assert!(tokio::time::timeout(Duration::from_millis(50), w.changed())
            .await
            .is_err());
        n.notify_room(&lobby);
        tokio::time::timeout(Duration::from_secs(1), w.changed())
            .await
            .expect("lobby waiter woken");
    }

    #[tokio::test]
    async fn close_wakes_current_and_future_waiters() {
        let n = Notifier::new();
        let alice: OwnedUserId = "@alice:localhost".try_into().unwrap();
        let mut before = n.subscribe(&alice);
        assert!(!before.is_closing());
        n.close();
        tokio::time::timeout(Duration::from_secs(1), before.changed())
            .await
            .expect("woken by close");
        let mut after = n.subscribe(&alice);
        assert!(after.is_closing());
        tokio::time::timeout(Duration::from_secs(1), after.changed())
            .await
            .expect("returns at once");
    }
}
