//! Client rate limiting: token buckets per action and key (a user ID or a client IP).
//!
//! Buckets live in memory only: a restart forgives everyone, which is what Synapse does too.

use std::collections::HashMap;
use std::sync::Mutex;

use crate::{Context, ServiceError, ServiceResult};

/// What a client is doing, each with its own budget.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RateAction {
    /// Sending messages, state events and redactions (keyed by user).
    Message,
    /// Registering an account (keyed by client IP).
    Registration,
    /// Logging in (keyed by client IP).
    Login,
    /// Authenticated requests from another server (keyed by its name).
    Federation,
    /// Wrong passwords, at login or in a UIA `m.login.password` stage (keyed by the user ID the
    /// password was tried for, so spreading guesses over many addresses does not help).
    FailedPassword,
    /// `GET /register/m.login.registration_token/validity` (keyed by client IP): each call is a
    /// guess at a registration token.
    TokenValidity,
    /// Another server asking about our users' devices and keys (`/user/devices`,
    /// `/user/keys/query`, `/user/keys/claim`; keyed by its name): each answer reads every
    /// device of the users named, and a claim spends one-time keys.
    FederationKeyQuery,
    /// Other servers a user's to-device messages and key requests reach (keyed by user): a
    /// request costs one token per server it names, so the per-request cap cannot be repeated
    /// without end.
    RemoteFanOut,
    /// Reports of events, rooms and users (keyed by user).
    Report,
    /// URL previews that fetch a page (keyed by user; answers from the cache are free).
    UrlPreview,
    /// Media uploads, at once or to a created media ID (keyed by user).
    MediaUpload,
}

/// One budget: `burst` requests at once, refilled at `per_minute`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Rate {
    pub per_minute: u32,
    pub burst: u32,
}

/// The budgets of every [`RateAction`]; `enabled = false` turns limiting off (benchmarks).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RateLimits {
    pub enabled: bool,
    pub message: Rate,
    pub registration: Rate,
    pub login: Rate,
    pub federation: Rate,
    pub failed_password: Rate,
    pub registration_token_validity: Rate,
    pub federation_key_query: Rate,
    pub remote_fan_out: Rate,
    pub report: Rate,
    pub url_preview: Rate,
    pub media_upload: Rate,
}

impl Default for RateLimits {
    fn default() -> Self {
        RateLimits {
            enabled: true,
            message: Rate {
                per_minute: 600,
                burst: 100,
            },
            registration: Rate {
                per_minute: 10,
                burst: 10,
            },
            login: Rate {
                per_minute: 30,
                burst: 10,
            },
            federation: Rate {
                per_minute: 6_000,
                burst: 500,
            },
            // Synapse's `rc_login.failed_attempts`: about one wrong password per 6 s, after 3.
            failed_password: Rate {
                per_minute: 10,
                burst: 3,
            },
            // Synapse's `rc_registration_token_validity`: one check per 10 s, after 5.
            registration_token_validity: Rate {
                per_minute: 6,
                burst: 5,
            },
            // A server whose users share rooms with ours queries their keys at each device-list
            // change; a few a second is plenty.
            federation_key_query: Rate {
                per_minute: 300,
                burst: 50,
            },
            // A whole request at the per-request cap (250 servers) fits the burst several times.
            remote_fan_out: Rate {
                per_minute: 1_000,
                burst: 1_000,
            },
            // Reports reach administrators: a handful at once, a few a minute.
            report: Rate {
                per_minute: 5,
                burst: 10,
            },
            // Each preview makes the server fetch a page and maybe an image for the user.
            url_preview: Rate {
                per_minute: 30,
                burst: 10,
            },
            // Synapse's `rc_media_create`: 10 a second after 50.
            media_upload: Rate {
                per_minute: 600,
                burst: 50,
            },
        }
    }
}

impl RateLimits {
    fn rate(&self, action: RateAction) -> Rate {
        match action {
            RateAction::Message => self.message,
            RateAction::Registration => self.registration,
            RateAction::Login => self.login,
            RateAction::Federation => self.federation,
            RateAction::FailedPassword => self.failed_password,
            RateAction::TokenValidity => self.registration_token_validity,
            RateAction::FederationKeyQuery => self.federation_key_query,
            RateAction::RemoteFanOut => self.remote_fan_out,
            RateAction::Report => self.report,
            RateAction::UrlPreview => self.url_preview,
            RateAction::MediaUpload => self.media_upload,
        }
    }
}

/// When the map grows past this many buckets, full (idle) buckets are dropped.
const PRUNE_ABOVE: usize = 10_000;

#[derive(Debug, Clone, Copy)]
struct Bucket {
    tokens: f64,
    updated_ms: u64,
}

/// The token buckets. Shared by every request; the lock is held for a few arithmetic operations.
#[derive(Debug, Default)]
pub struct RateLimiter {
    limits: RateLimits,
    buckets: Mutex<HashMap<(RateAction, String), Bucket>>,
}

impl RateLimiter {
    pub fn new(limits: RateLimits) -> Self {
        RateLimiter {
            limits,
            buckets: Mutex::default(),
        }
    }

    /// Takes one token from `key`'s bucket for `action`, or says how long to wait for one.
    pub fn check(&self, action: RateAction, key: &str, now_ms: u64) -> Result<(), u64> {
        self.update(action, key, now_ms, 1.0)
    }

    /// Takes `cost` tokens at once (all or none), or says how long to wait for them. A cost above
    /// the burst can never be paid.
    pub fn check_cost(
        &self,
        action: RateAction,
        key: &str,
        now_ms: u64,
        cost: u32,
    ) -> Result<(), u64> {
        self.update(action, key, now_ms, f64::from(cost))
    }

    /// Whether `key`'s bucket for `action` holds a token, without taking it (or how long to wait
    /// for one). For budgets spent only by failures: look first, [`RateLimiter::check`] on failure.
    pub fn peek(&self, action: RateAction, key: &str, now_ms: u64) -> Result<(), u64> {
        self.update(action, key, now_ms, 0.0)
    }

    /// Takes `cost` tokens if the bucket holds them (and at least one).
    fn update(&self, action: RateAction, key: &str, now_ms: u64, cost: f64) -> Result<(), u64> {
        if !self.limits.enabled {
            return Ok(());
        }
        let rate = self.limits.rate(action);
        let burst = f64::from(rate.burst.max(1));
        let per_ms = f64::from(rate.per_minute) / 60_000.0;
        let mut buckets = self.buckets.lock().unwrap_or_else(|p| p.into_inner());
        if buckets.len() > PRUNE_ABOVE {
            buckets.retain(|(a, _), b| {
                refill(
                    *b,
                    now_ms,
                    f64::from(self.limits.rate(*a).per_minute) / 60_000.0,
                    f64::MAX,
                ) < f64::from(self.limits.rate(*a).burst)
            });
        }
        let bucket = buckets.entry((action, key.to_owned())).or_insert(Bucket {
            tokens: burst,
            updated_ms: now_ms,
        });
        let tokens = refill(*bucket, now_ms, per_ms, burst);
        let needed = cost.max(1.0);
        if tokens >= needed {
            *bucket = Bucket {
                tokens: tokens - cost,
                updated_ms: now_ms,
            };
            return Ok(());
        }
        *bucket = Bucket {
            tokens,
            updated_ms: now_ms,
        };
        if per_ms <= 0.0 {
            return Err(60_000);
        }
        // Round up so that a client retrying after exactly this long succeeds.
        Err(((needed - tokens) / per_ms).ceil() as u64)
    }
}

/// The bucket's tokens at `now_ms`, capped at `cap`.
fn refill(bucket: Bucket, now_ms: u64, per_ms: f64, cap: f64) -> f64 {
    let elapsed = now_ms.saturating_sub(bucket.updated_ms) as f64;
    (bucket.tokens + elapsed * per_ms).min(cap)
}

impl Context {
    /// Refuses with `M_LIMIT_EXCEEDED` when `key` has used up its budget for `action`.
    pub fn check_rate(&self, action: RateAction, key: &str) -> ServiceResult<()> {
        self.rate_limiter
            .check(action, key, self.now_ms())
            .map_err(|retry_after_ms| ServiceError::LimitExceeded { retry_after_ms })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limiter(per_minute: u32, burst: u32) -> RateLimiter {
        let rate = Rate { per_minute, burst };
        RateLimiter::new(RateLimits {
            enabled: true,
            message: rate,
            registration: rate,
            login: rate,
            federation: rate,
            failed_password: rate,
            registration_token_validity: rate,
            federation_key_query: rate,
            remote_fan_out: rate,
            report: rate,
            url_preview: rate,
            media_upload: rate,
        })
    }

    #[test]
    fn allows_a_burst_then_refuses_with_a_retry_time() {
        let l = limiter(60, 3); // one token per second
        for _ in 0..3 {
            assert_eq!(l.check(RateAction::Message, "@a:x", 1_000), Ok(()));
        }
        assert_eq!(l.check(RateAction::Message, "@a:x", 1_000), Err(1_000));
        assert_eq!(l.check(RateAction::Message, "@a:x", 1_500), Err(500));
        assert_eq!(l.check(RateAction::Message, "@a:x", 2_000), Ok(()));
    }

    #[test]
    fn keys_and_actions_have_separate_buckets() {
        let l = limiter(60, 1);
        assert_eq!(l.check(RateAction::Message, "@a:x", 0), Ok(()));
        assert!(l.check(RateAction::Message, "@a:x", 0).is_err());
        assert_eq!(l.check(RateAction::Message, "@b:x", 0), Ok(()));
        assert_eq!(l.check(RateAction::Login, "@a:x", 0), Ok(()));
    }

    #[test]
    fn refill_is_capped_at_the_burst() {
        let l = limiter(60, 2);
        assert_eq!(l.check(RateAction::Login, "ip", 0), Ok(()));
        // An hour idle refills only to the burst.
        for _ in 0..2 {
            assert_eq!(l.check(RateAction::Login, "ip", 3_600_000), Ok(()));
        }
        assert!(l.check(RateAction::Login, "ip", 3_600_000).is_err());
    }

    #[test]
    fn peek_does_not_take_a_token() {
        let l = limiter(60, 2);
        for _ in 0..10 {
            assert_eq!(l.peek(RateAction::FailedPassword, "@a:x", 0), Ok(()));
        }
        assert_eq!(l.check(RateAction::FailedPassword, "@a:x", 0), Ok(()));
        assert_eq!(l.check(RateAction::FailedPassword, "@a:x", 0), Ok(()));
        assert_eq!(l.peek(RateAction::FailedPassword, "@a:x", 0), Err(1_000));
        assert_eq!(l.peek(RateAction::FailedPassword, "@a:x", 1_000), Ok(()));
    }

    #[test]
    fn a_cost_is_taken_whole_or_not_at_all() {
        let l = limiter(60, 10); // one token per second
        assert_eq!(l.check_cost(RateAction::RemoteFanOut, "@a:x", 0, 7), Ok(()));
        // 3 left: a cost of 4 waits one second, and takes nothing meanwhile.
        assert_eq!(
            l.check_cost(RateAction::RemoteFanOut, "@a:x", 0, 4),
            Err(1_000)
        );
        assert_eq!(l.check_cost(RateAction::RemoteFanOut, "@a:x", 0, 3), Ok(()));
        assert_eq!(
            l.check_cost(RateAction::RemoteFanOut, "@a:x", 1_000, 1),
            Ok(())
        );
        // More than the burst is never possible.
        assert!(l
            .check_cost(RateAction::RemoteFanOut, "@b:x", 0, 11)
            .is_err());
    }

    #[test]
    fn disabled_never_refuses() {
        let l = RateLimiter::new(RateLimits {
            enabled: false,
            ..RateLimits::default()
        });
        for _ in 0..10_000 {
            assert_eq!(l.check(RateAction::Registration, "ip", 0), Ok(()));
        }
    }
}
