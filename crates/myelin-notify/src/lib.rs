//! Wakes `/sync` long-polls after a commit, keyed by user.
//!
//! The service calls [`Notifier::notify`] with the users a committed change concerns; each
//! waiting `/sync` holds a [`Waiter`] for its user and wakes within a scheduler tick. Nothing
//! here polls storage.

use std::{collections::HashMap, sync::Mutex};

use ruma::{OwnedUserId, UserId};
use tokio::sync::watch;

/// Per-user wake-up channels.
#[derive(Default)]
pub struct Notifier {
    channels: Mutex<HashMap<OwnedUserId, watch::Sender<u64>>>,
}

/// A subscription for one user; [`Waiter::changed`] resolves on the next notification.
pub struct Waiter {
    rx: watch::Receiver<u64>,
}

impl Waiter {
    /// Waits for the next notification after the subscription (or the previous `changed`).
    pub async fn changed(&mut self) {
        // An error means the sender was dropped, which only happens when no waiter existed;
        // treat it as a wake-up so the caller re-checks.
        let _ = self.rx.changed().await;
    }
}

impl Notifier {
    pub fn new() -> Self {
        Self::default()
    }

    /// Subscribes before reading, so a change committed between the read and the wait is not missed.
    pub fn subscribe(&self, user_id: &UserId) -> Waiter {
        let mut channels = self.channels.lock().unwrap_or_else(|p| p.into_inner());
        let tx = channels.entry(user_id.to_owned()).or_insert_with(|| watch::channel(0).0);
        Waiter { rx: tx.subscribe() }
    }

    /// Wakes every waiter of the given users.
    pub fn notify<'a>(&self, users: impl IntoIterator<Item = &'a UserId>) {
        let mut channels = self.channels.lock().unwrap_or_else(|p| p.into_inner());
        for user in users {
            if let Some(tx) = channels.get(user) {
                if tx.receiver_count() == 0 {
                    channels.remove(user);
                } else {
                    tx.send_modify(|v| *v = v.wrapping_add(1));
                }
            }
        }
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
        tokio::time::timeout(Duration::from_secs(1), wa.changed()).await.expect("alice woken");
        assert!(tokio::time::timeout(Duration::from_millis(50), wb.changed()).await.is_err());
    }
}
