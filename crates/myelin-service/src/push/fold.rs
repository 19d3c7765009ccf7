//! The background fold of the unread counters: the `push_events` rows written since the last
//! fold are added to the counters in one storage write (see `myelin_storage::push_fold`), a
//! short while after an event notified anyone, so that one counter update covers every message
//! of that while. Counts are exact before the fold too: reads add the rows still pending.

use std::sync::{Arc, Weak};
use std::time::Duration;

use myelin_storage::push_fold::FOLD_BATCH;
use tokio::sync::Notify;

use super::Push;

/// How long after a wake-up the fold waits for more events to fold with it.
const FOLD_DELAY: Duration = Duration::from_millis(200);

/// Folds whatever is pending (rows left by a restart first), then again after each wake-up;
/// ends with the server.
pub(super) async fn run(push: Weak<Push>, wake: Arc<Notify>) {
    loop {
        loop {
            let Some(push) = push.upgrade() else { return };
            match push.ctx.storage.fold_unread_counts(FOLD_BATCH).await {
                Ok(folded) if folded == FOLD_BATCH => continue,
                Ok(_) => break,
                Err(e) => {
                    // Counts stay exact (reads add pending rows); the next wake-up tries again.
                    tracing::warn!(error = %e, "cannot fold the unread counters");
                    break;
                }
            }
        }
        wake.notified().await;
        tokio::time::sleep(FOLD_DELAY).await;
    }
}
