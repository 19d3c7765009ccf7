//! The server's long-running background work (delivery to other servers, push gateways and
//! application services, the unread counters' fold): spawned here so that it ends when the
//! server stops. A killed process ends it anyway; a server stopped inside a process that goes
//! on (the tests' restarts, an embedding) must not leave workers retrying what they held.

use std::future::Future;

use tokio::sync::watch;
use tokio::task::JoinHandle;

pub struct Workers {
    stop: watch::Sender<bool>,
}

impl Default for Workers {
    fn default() -> Self {
        Workers {
            stop: watch::channel(false).0,
        }
    }
}

impl Workers {
    /// Runs `work` in a task of its own until it ends or the server stops. Stopping drops it
    /// at its next await: every worker keeps its place in durable storage, so the next start
    /// carries on from there, as after a crash.
    pub fn spawn<F>(&self, work: F) -> JoinHandle<()>
    where
        F: Future<Output = ()> + Send + 'static,
    {
        let mut stopped = self.stop.subscribe();
        tokio::spawn(async move {
            tokio::select! {
                () = work => {}
                // Also resolves at once for work spawned after the stop.
                _ = stopped.wait_for(|stop| *stop) => {}
            }
        })
    }

    /// Ends every worker (at its next await) and any spawned later.
    pub fn stop(&self) {
        self.stop.send_replace(true);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn stopping_ends_running_and_later_workers() {
        let workers = Workers::default();
        let running = workers.spawn(std::future::pending());
        workers.stop();
        running.await.expect("the worker ends rather than panics");
        let later = workers.spawn(std::future::pending());
        later
            .await
            .expect("work spawned after the stop ends at once");
    }
}
