//! `upload`: users upload files of each size at a fixed concurrency, then download them all
//! back; measures the throughput (MiB/s) and latency of `POST /_matrix/media/v3/upload` and of
//! the authenticated `GET /_matrix/client/v1/media/download`. Every file has its own bytes (no
//! de-duplication helps). The run's peak RSS shows whether uploads are held in memory.

use std::sync::Arc;
use std::time::Instant;

use crate::error::{BenchError, Result};
use crate::pool::run_indexed;
use crate::report::{Better, WorkloadReport};
use crate::setup::{register_users, Ctx};
use crate::stats::Summary;

use super::ms_since;

const MIB: f64 = 1024.0 * 1024.0;

/// The sizes of `upload`.
#[derive(Debug, Clone)]
pub struct Params {
    pub users: usize,
    /// File sizes in KiB, each measured on its own.
    pub sizes_kib: Vec<usize>,
    /// Files uploaded (then downloaded) per size.
    pub files: usize,
    pub concurrency: usize,
}

impl Default for Params {
    fn default() -> Self {
        Params {
            users: 16,
            sizes_kib: vec![1024, 10 * 1024],
            files: 64,
            concurrency: 16,
        }
    }
}

/// A label for a size: `1MiB`, `10MiB`, or `64KiB`.
fn label(kib: usize) -> String {
    if kib.is_multiple_of(1024) {
        format!("{}MiB", kib / 1024)
    } else {
        format!("{kib}KiB")
    }
}

/// `len` pseudo-random bytes (xorshift), the same for every run.
fn noise(len: usize) -> Vec<u8> {
    let mut x: u64 = 0x2545_F491_4F6C_DD1D;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

/// Runs `upload`.
pub async fn run(ctx: &Ctx, p: &Params) -> Result<WorkloadReport> {
    if p.users == 0 || p.files == 0 || p.sizes_kib.contains(&0) {
        return Err(BenchError::Invalid(
            "upload needs users, files and sizes above 0".into(),
        ));
    }
    let mut report = WorkloadReport::new("upload");
    report.param("users", p.users);
    report.param("files", p.files);
    report.param("concurrency", p.concurrency);
    report.param(
        "sizes",
        p.sizes_kib.iter().map(|&k| label(k)).collect::<Vec<_>>(),
    );
    let users = Arc::new(register_users(ctx, "m", p.users).await?);
    for &kib in &p.sizes_kib {
        measure_size(ctx, p, &users, kib, &mut report).await?;
    }
    Ok(report)
}

/// Uploads then downloads `p.files` files of `kib` KiB; adds the figures of that size.
async fn measure_size(
    ctx: &Ctx,
    p: &Params,
    users: &Arc<Vec<crate::client::User>>,
    kib: usize,
    report: &mut WorkloadReport,
) -> Result<()> {
    let size = kib * 1024;
    let base = Arc::new(noise(size));
    let tag = label(kib);
    let (client, users_up, base_up) = (ctx.client.clone(), users.clone(), base.clone());
    let started = Instant::now();
    let uploads = run_indexed(p.files, p.concurrency, move |i| {
        let (client, users, base) = (client.clone(), users_up.clone(), base_up.clone());
        async move {
            // Each file differs in its first bytes, so every upload is a new file.
            let mut body = base.as_ref().clone();
            let stamp = (i as u64).to_le_bytes();
            body[..stamp.len().min(size)].copy_from_slice(&stamp[..stamp.len().min(size)]);
            let user = &users[i % users.len()];
            let t = Instant::now();
            client
                .upload(user, body)
                .await
                .map(|uri| (uri, ms_since(t)))
        }
    })
    .await?;
    let up_wall = started.elapsed().as_secs_f64();
    let mut uris = Vec::new();
    let mut up_ms = Vec::new();
    for r in uploads {
        match r {
            Ok((uri, ms)) => {
                uris.push(uri);
                up_ms.push(ms);
            }
            Err(e) => report.error(e),
        }
    }
    throughput(report, &format!("up_{tag}"), uris.len(), size, up_wall);
    report.latency(&format!("up_{tag}"), Summary::of(&up_ms));

    let (client, users_down, uris) = (ctx.client.clone(), users.clone(), Arc::new(uris));
    let count = uris.len();
    let started = Instant::now();
    let downloads = run_indexed(count, p.concurrency, move |i| {
        let (client, users, uris) = (client.clone(), users_down.clone(), uris.clone());
        async move {
            let t = Instant::now();
            let got = client.download(&users[i % users.len()], &uris[i]).await?;
            if got != size as u64 {
                return Err(BenchError::Response {
                    what: "download".into(),
                    detail: format!("{got} bytes, expected {size}"),
                });
            }
            Ok(ms_since(t))
        }
    })
    .await?;
    let down_wall = started.elapsed().as_secs_f64();
    let mut down_ms = Vec::new();
    for r in downloads {
        match r {
            Ok(ms) => down_ms.push(ms),
            Err(e) => report.error(e),
        }
    }
    throughput(
        report,
        &format!("down_{tag}"),
        down_ms.len(),
        size,
        down_wall,
    );
    report.latency(&format!("down_{tag}"), Summary::of(&down_ms));
    Ok(())
}

/// Adds `<name>` in MiB/s for `files` files of `size` bytes in `wall` seconds.
fn throughput(report: &mut WorkloadReport, name: &str, files: usize, size: usize, wall: f64) {
    if wall > 0.0 && files > 0 {
        let mib = files as f64 * size as f64 / MIB;
        report.metric(name, "MiB/s", mib / wall, Better::Higher);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_are_labelled() {
        assert_eq!(label(1024), "1MiB");
        assert_eq!(label(10 * 1024), "10MiB");
        assert_eq!(label(64), "64KiB");
        assert_eq!(noise(4), noise(4));
    }
}
