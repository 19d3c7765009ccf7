//! Runs `n` indexed jobs on a bounded number of concurrent tokio tasks.

use std::future::Future;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use tokio::task::JoinSet;

use crate::error::{BenchError, Result};

/// Calls `job(i)` for every `i` in `0..n`, at most `concurrency` at a time, and returns the
/// outputs in index order. Fails only if a task panicked.
pub async fn run_indexed<T, F, Fut>(n: usize, concurrency: usize, job: F) -> Result<Vec<T>>
where
    F: Fn(usize) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = T> + Send + 'static,
    T: Send + 'static,
{
    let job = Arc::new(job);
    let next = Arc::new(AtomicUsize::new(0));
    let mut set = JoinSet::new();
    for _ in 0..concurrency.clamp(1, n.max(1)) {
        let (job, next) = (job.clone(), next.clone());
        set.spawn(async move {
            let mut out = Vec::new();
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= n {
                    break out;
                }
                out.push((i, job(i).await));
            }
        });
    }
    let mut all = Vec::with_capacity(n);
    while let Some(done) = set.join_next().await {
        all.extend(done.map_err(|e| BenchError::Task(e.to_string()))?);
    }
    all.sort_by_key(|(i, _)| *i);
    Ok(all.into_iter().map(|(_, t)| t).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn keeps_index_order() {
        let out = run_indexed(50, 7, |i| async move { i * 2 })
            .await
            .expect("no panic");
        assert_eq!(out, (0..50).map(|i| i * 2).collect::<Vec<_>>());
        let none = run_indexed(0, 4, |i| async move { i })
            .await
            .expect("no panic");
        assert!(none.is_empty());
    }
}
