//! Push notifications: each local member's push rules evaluated when an event is stored
//! (`evaluate.rs`, called by rooms and ingest under the room's lock, so the notification rows
//! commit with the event), the unread counts and `/notifications` read from those rows
//! (`notifications.rs`) and the counters folded from them in the background (`fold.rs`),
//! pushers (`pushers.rs`), and one worker per HTTP pusher draining its durable queue to the
//! push gateway (`gateway.rs`).

mod email;
mod evaluate;
mod fold;
mod gateway;
mod notifications;
mod pushers;
mod room_facts;

pub use notifications::{Notification, NotificationsPage};
pub use pushers::{PusherSet, MAX_PUSHKEY_BYTES};
pub(crate) use room_facts::RoomPushFacts;

use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock, Weak};

use myelin_storage::NewEvent;
use ruma::push::Ruleset;
use ruma::{OwnedUserId, UserId};
use serde_json::Value;
use tokio::sync::Notify;

use crate::{Context, ServiceError, ServiceResult};

/// What a committed batch of events gave push to do.
pub(crate) struct Notified {
    /// Whether any event notified anyone: the fold has rows to take.
    anyone: bool,
    /// The users (each once) with pushers whose queues the batch added to.
    queued: Vec<OwnedUserId>,
}

impl Notified {
    pub(crate) fn by(batch: &[NewEvent]) -> Notified {
        let mut queued: Vec<OwnedUserId> = batch
            .iter()
            .flat_map(|e| e.push_actions.iter().filter(|a| a.queue))
            .map(|a| a.user_id.clone())
            .collect();
        queued.sort();
        queued.dedup();
        Notified {
            anyone: batch.iter().any(|e| !e.push_actions.is_empty()),
            queued,
        }
    }
}

/// The account data type a user's push rules are stored under.
pub(crate) const PUSH_RULES: &str = "m.push_rules";

/// How many users' parsed rulesets are kept; past it the cache starts over.
const RULESET_CACHE: usize = 10_000;

/// Push: evaluation of push rules at write time, counts, pushers and delivery.
pub struct Push {
    pub(crate) ctx: Arc<Context>,
    /// Parsed rulesets by user, dropped when the user's rules change.
    rulesets: Mutex<HashMap<OwnedUserId, Arc<UserRuleset>>>,
    /// The IDs of each user's pushers (HTTP and e-mail), read once per user and dropped on every
    /// change.
    pushers_by_user: Mutex<HashMap<OwnedUserId, Arc<Vec<i64>>>>,
    /// The running delivery worker of each pusher, woken when its queue grows.
    workers: Mutex<HashMap<i64, Arc<Notify>>>,
    /// Wakes the background fold of the unread counters.
    fold: Arc<Notify>,
    /// The HTTP client of every delivery (built through the egress filter on first use).
    client: OnceLock<reqwest::Client>,
    /// Handed to workers, so that they end with the server.
    this: Weak<Push>,
}

impl Push {
    pub fn new(ctx: Arc<Context>) -> Arc<Push> {
        Arc::new_cyclic(|this| Push {
            ctx,
            rulesets: Mutex::new(HashMap::new()),
            pushers_by_user: Mutex::new(HashMap::new()),
            workers: Mutex::new(HashMap::new()),
            fold: Arc::new(Notify::new()),
            client: OnceLock::new(),
            this: this.clone(),
        })
    }

    /// Starts delivery: a worker for every pusher with queued notifications (those queued
    /// before a restart are delivered now), and the fold of the unread counters.
    pub async fn start_pushers(&self) -> ServiceResult<()> {
        self.ctx
            .workers
            .spawn(fold::run(self.this.clone(), self.fold.clone()));
        for id in self.ctx.storage.pushers_with_queue().await? {
            self.wake_pusher(id);
        }
        Ok(())
    }

    /// The user's ruleset (the server defaults merged with their own rules), parsed once.
    pub(crate) async fn ruleset(&self, user_id: &UserId) -> ServiceResult<Arc<UserRuleset>> {
        if let Some(rules) = lock(&self.rulesets).get(user_id) {
            return Ok(rules.clone());
        }
        let rules = Arc::new(load_user_ruleset(&self.ctx, user_id).await?);
        let mut cache = lock(&self.rulesets);
        if cache.len() >= RULESET_CACHE {
            cache.clear();
        }
        cache.insert(user_id.to_owned(), rules.clone());
        Ok(rules)
    }

    /// Forgets the user's parsed ruleset: their rules changed.
    pub(crate) fn forget_ruleset(&self, user_id: &UserId) {
        lock(&self.rulesets).remove(user_id);
    }

    /// Wakes the delivery workers of the users' pushers (after a commit queued for them).
    /// Their counters have new rows to fold, too.
    /// Wakes what a committed batch gave work to: the fold when it notified anyone, and the
    /// delivery workers of the users whose queues grew.
    pub(crate) async fn wake(&self, notified: &Notified) {
        if notified.anyone {
            self.fold.notify_one();
        }
        for user_id in &notified.queued {
            match self.pusher_ids(user_id).await {
                Ok(ids) => ids.iter().for_each(|id| self.wake_pusher(*id)),
                Err(e) => tracing::warn!(%user_id, error = %e, "cannot read pushers"),
            }
        }
    }

    pub(crate) async fn pusher_ids(&self, user_id: &UserId) -> ServiceResult<Arc<Vec<i64>>> {
        if let Some(ids) = lock(&self.pushers_by_user).get(user_id) {
            return Ok(ids.clone());
        }
        let ids: Vec<i64> = self
            .ctx
            .storage
            .pushers(user_id)
            .await?
            .into_iter()
            .filter(|p| p.kind == "http" || p.kind == "email")
            .map(|p| p.id)
            .collect();
        let ids = Arc::new(ids);
        let mut cache = lock(&self.pushers_by_user);
        if cache.len() >= RULESET_CACHE {
            cache.clear();
        }
        cache.insert(user_id.to_owned(), ids.clone());
        Ok(ids)
    }

    /// Forgets the user's cached pusher IDs: their pushers changed.
    pub(crate) fn forget_pushers(&self, user_id: &UserId) {
        lock(&self.pushers_by_user).remove(user_id);
    }

    /// Wakes (or starts) the delivery worker of a pusher.
    pub(crate) fn wake_pusher(&self, id: i64) {
        let mut workers = lock(&self.workers);
        if let Some(notify) = workers.get(&id) {
            notify.notify_one();
            return;
        }
        let notify = Arc::new(Notify::new());
        workers.insert(id, notify.clone());
        self.ctx
            .workers
            .spawn(gateway::run_worker(self.this.clone(), id, notify));
    }

    /// A worker ended: its pusher is gone (deleted, rejected, or with its device), so the cached
    /// pusher lists may name it.
    fn worker_ended(&self, id: i64) {
        lock(&self.workers).remove(&id);
        lock(&self.pushers_by_user).clear();
    }
}

/// The user's stored ruleset with the server defaults of this version merged in.
pub(crate) async fn load_ruleset(ctx: &Context, user_id: &UserId) -> ServiceResult<Ruleset> {
    Ok(load_user_ruleset(ctx, user_id).await?.rules)
}

/// A user's ruleset, and whether it is the server's default one (they never changed a rule).
#[derive(Debug)]
pub(crate) struct UserRuleset {
    pub rules: Ruleset,
    /// The server defaults untouched: the outcome for this user then differs from another
    /// such user's only through their name and mentions (see `evaluate.rs`).
    pub is_default: bool,
}

async fn load_user_ruleset(ctx: &Context, user_id: &UserId) -> ServiceResult<UserRuleset> {
    let defaults = Ruleset::server_default(user_id);
    let stored = ctx
        .storage
        .get_account_data(user_id, None, PUSH_RULES)
        .await?;
    let Some(global) = stored.and_then(|mut v| v.get_mut("global").map(Value::take)) else {
        return Ok(UserRuleset {
            rules: defaults,
            is_default: true,
        });
    };
    let mut rules: Ruleset = serde_json::from_value(global).map_err(|e| {
        ServiceError::Internal(format!("stored push rules of {user_id} are invalid: {e}"))
    })?;
    rules.update_with_server_default(defaults);
    Ok(UserRuleset {
        rules,
        is_default: false,
    })
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

#[cfg(test)]
mod tests;
