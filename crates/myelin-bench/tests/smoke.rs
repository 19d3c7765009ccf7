//! Smoke test: every workload with tiny sizes against a real in-process Myelin, through the
//! library and through the binary. Asserts that every figure is present and that nothing
//! failed; never asserts on timings.

use std::time::Duration;

use myelin_bench::runner::{run, Target};
use myelin_bench::workloads::{
    deliver, incremental_sync, initial_sync, join, push, send, sliding_sync, upload, AllParams, ALL,
};
use myelin_bench::RunReport;
use myelin_testing::TestServer;

fn tiny() -> AllParams {
    AllParams {
        send: send::Params {
            users: 4,
            rooms: 2,
            members: 3,
            messages: 40,
            concurrency: 4,
        },
        deliver: deliver::Params {
            samples: 10,
            arrival_timeout_ms: 10_000,
            gap_ms: 2,
        },
        push: push::Params {
            samples: 5,
            arrival_timeout_ms: 10_000,
            gap_ms: 2,
        },
        initial_sync: initial_sync::Params {
            rooms: 3,
            members: 3,
            events: 3,
            timeline_limit: 2,
            samples: 2,
        },
        incremental_sync: incremental_sync::Params {
            users: 6,
            rooms: 2,
            messages: 6,
            interval_ms: 5,
            drain_timeout_ms: 10_000,
        },
        join: join::Params {
            sizes: vec![2, 5],
            samples: 2,
            concurrency: 2,
        },
        sliding_sync: sliding_sync::Params {
            rooms: 3,
            members: 3,
            events: 2,
            samples: 2,
            wakeups: 4,
            long_poll_ms: 10_000,
        },
        upload: upload::Params {
            users: 2,
            sizes_kib: vec![16, 64],
            files: 4,
            concurrency: 2,
        },
    }
}

/// The figures each workload must report with the tiny sizes.
const EXPECTED: &[&str] = &[
    "send.throughput",
    "send.put_p50",
    "send.put_p99",
    "deliver.delivery_p50",
    "deliver.delivery_p99",
    "push.gateway_p50",
    "push.gateway_p99",
    "initial-sync.lazy_first",
    "initial-sync.lazy_warm_repeat_p50",
    "initial-sync.lazy_warm_new_device_p50",
    "initial-sync.full_first",
    "initial-sync.full_warm_repeat_p50",
    "initial-sync.full_warm_new_device_p50",
    "incremental-sync.deliveries",
    "incremental-sync.wakeup_p50",
    "incremental-sync.wakeup_p99",
    "join.create_2",
    "join.fill_2_rate",
    "join.join_2_p50",
    "join.leave_2_p50",
    "join.create_5",
    "join.fill_5_rate",
    "join.join_5_p50",
    "join.leave_5_p50",
    "sliding-sync.first_cold",
    "sliding-sync.first_p50",
    "sliding-sync.wakeup_p50",
    "sliding-sync.wakeup_p99",
    "upload.up_16KiB",
    "upload.up_16KiB_p50",
    "upload.down_16KiB",
    "upload.down_64KiB_p99",
    "resources.peak_rss",
    "resources.final_rss",
    "resources.server_cpu",
    "resources.db_size",
    "resources.loader_cpu",
];

/// What `myelin-bench compare` configures: no rate limits, and the `push` workload's stub
/// gateway on loopback allowed.
fn bench_config(c: &mut myelin_testing::Config) {
    c.rate_limits.enabled = false;
    c.egress.allow = vec!["127.0.0.1".into()];
}

fn check(report: &RunReport) {
    for w in &report.workloads {
        assert_eq!(
            w.errors, 0,
            "{} had errors: {:?}",
            w.workload, w.error_samples
        );
    }
    let keys: Vec<String> = report.flat().into_iter().map(|(k, _)| k).collect();
    for want in EXPECTED {
        assert!(
            keys.iter().any(|k| k == want),
            "figure {want} missing from {keys:?}"
        );
    }
    assert_eq!(report.workloads.len(), ALL.len());
    assert!(report.flat().iter().all(|(_, m)| m.value.is_finite()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_workload_through_the_library() {
    let server = TestServer::start_with(bench_config).await;
    let names: Vec<String> = ALL.iter().map(|s| s.to_string()).collect();
    // The server runs in this process, so this process's /proc entry stands for it.
    let db = server.data_dir().to_owned();
    let target = Target {
        label: "myelin (in-process)",
        url: server.base_url(),
        pid: Some(std::process::id()),
        db_path: Some(&db),
        setup_concurrency: 4,
    };
    let report = tokio::time::timeout(
        Duration::from_secs(50),
        run(&target, &names, &tiny(), &|_| {}),
    )
    .await
    .expect("the workloads finish in time")
    .expect("the workloads run");
    check(&report);
    assert!(report.table().contains("send.throughput"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_binary_runs_all_and_writes_json() {
    let server = TestServer::start_with(bench_config).await;
    let out = tempfile::tempdir().expect("tempdir");
    let json = out.path().join("r.json");
    let args = [
        "all",
        "--url",
        server.base_url(),
        "--label",
        "smoke",
        "--setup-concurrency",
        "4",
        "--send-users",
        "4",
        "--send-rooms",
        "2",
        "--send-members",
        "3",
        "--send-messages",
        "20",
        "--send-concurrency",
        "4",
        "--deliver-samples",
        "5",
        "--push-samples",
        "3",
        "--initial-rooms",
        "2",
        "--initial-members",
        "3",
        "--initial-events",
        "2",
        "--initial-timeline-limit",
        "2",
        "--initial-samples",
        "1",
        "--incremental-users",
        "4",
        "--incremental-rooms",
        "2",
        "--incremental-messages",
        "4",
        "--incremental-interval-ms",
        "5",
        "--join-sizes",
        "2,5",
        "--join-samples",
        "1",
        "--join-concurrency",
        "2",
        "--sliding-samples",
        "1",
        "--sliding-wakeups",
        "2",
        "--upload-sizes-kib",
        "16,64",
        "--upload-files",
        "3",
        "--upload-concurrency",
        "2",
    ];
    let mut cmd = tokio::process::Command::new(env!("CARGO_BIN_EXE_myelin-bench"));
    cmd.args(args)
        .arg("--pid")
        .arg(std::process::id().to_string())
        .arg("--db-path")
        .arg(server.data_dir())
        .arg("--json")
        .arg(&json);
    cmd.kill_on_drop(true);
    let output = tokio::time::timeout(Duration::from_secs(50), cmd.output())
        .await
        .expect("binary finishes in time")
        .expect("binary runs");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "myelin-bench failed: {stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    for want in EXPECTED {
        assert!(
            stdout.contains(&format!("| {want} ")),
            "table lacks {want}:\n{stdout}"
        );
    }
    let text = std::fs::read_to_string(&json).expect("JSON written");
    let report: RunReport = serde_json::from_str(&text).expect("JSON is a RunReport");
    check(&report);
}
