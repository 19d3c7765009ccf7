//! The `myelin-bench` command line: one subcommand per workload, `all`, and `compare`.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{bail, Context};
use clap::{Parser, Subcommand};

use myelin_bench::cli::Sizes;
use myelin_bench::compare::{myelin, process::Server, synapse, CompareReport};
use myelin_bench::runner::{run, Target};
use myelin_bench::workloads::ALL;
use myelin_bench::RunReport;

#[derive(Parser)]
#[command(
    name = "myelin-bench",
    version,
    about = "Benchmarks a Matrix homeserver over the Client-Server API (loopback only)"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

/// What every single-server subcommand takes.
#[derive(clap::Args, Clone)]
struct TargetArgs {
    /// The homeserver's base URL (loopback only).
    #[arg(long, default_value = "http://127.0.0.1:8008")]
    url: String,
    /// The server's PID: sample its RSS and CPU time from /proc.
    #[arg(long)]
    pid: Option<u32>,
    /// The database file or directory, whose size is reported at the end.
    #[arg(long)]
    db_path: Option<PathBuf>,
    /// A label for the report.
    #[arg(long, default_value = "server")]
    label: String,
    /// Write the results as JSON to this file.
    #[arg(long)]
    json: Option<PathBuf>,
    /// Concurrency of the unmeasured set-up (registration, room building).
    #[arg(long, default_value_t = 16)]
    setup_concurrency: usize,
    #[command(flatten)]
    sizes: Sizes,
}

#[derive(Subcommand)]
enum Command {
    /// Throughput and latency of PUT /send.
    Send(TargetArgs),
    /// Latency from a send to its arrival in another member's long-polling /sync.
    Deliver(TargetArgs),
    /// The first /sync of a user in many rooms, lazy-loading and full state.
    InitialSync(TargetArgs),
    /// Wake-up latency of many long-polling /sync requests while messages flow.
    IncrementalSync(TargetArgs),
    /// Create, join and leave rooms of growing member counts.
    Join(TargetArgs),
    /// Every workload, one after the other.
    All(TargetArgs),
    /// Start Myelin and Synapse in turn on fresh data directories, run the same workloads
    /// against each, and print the figures side by side.
    Compare(CompareArgs),
}

#[derive(clap::Args)]
struct CompareArgs {
    /// The Myelin binary (build it with `cargo build --release -p myelin`).
    #[arg(long, default_value = "target/release/myelin")]
    myelin_bin: PathBuf,
    /// The venv made by `scripts/synapse-venv`.
    #[arg(long, default_value = ".bench/synapse-venv")]
    synapse_venv: PathBuf,
    /// Where the fresh data directories go (wiped first).
    #[arg(long, default_value = ".bench/compare")]
    work_dir: PathBuf,
    /// Write the comparison as JSON here.
    #[arg(long, default_value = ".bench/compare/results.json")]
    json: PathBuf,
    /// Draw the PNG chart here (with scripts/bench-chart.py in the venv's Python).
    #[arg(long, default_value = ".bench/compare/compare.png")]
    chart: PathBuf,
    /// Do not draw the chart.
    #[arg(long)]
    no_chart: bool,
    /// The chart script.
    #[arg(long, default_value = "scripts/bench-chart.py")]
    chart_script: PathBuf,
    /// Only run one server: `myelin` or `synapse`.
    #[arg(long)]
    only: Option<String>,
    /// The workloads, comma-separated (default: all).
    #[arg(long, value_delimiter = ',')]
    workloads: Vec<String>,
    /// Concurrency of the unmeasured set-up.
    #[arg(long, default_value_t = 16)]
    setup_concurrency: usize,
    #[command(flatten)]
    sizes: Sizes,
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async move {
        match cli.command {
            Command::Send(a) => single(a, &["send"]).await,
            Command::Deliver(a) => single(a, &["deliver"]).await,
            Command::InitialSync(a) => single(a, &["initial-sync"]).await,
            Command::IncrementalSync(a) => single(a, &["incremental-sync"]).await,
            Command::Join(a) => single(a, &["join"]).await,
            Command::All(a) => single(a, &ALL).await,
            Command::Compare(a) => compare(a).await,
        }
    })
}

fn progress(name: &str) {
    eprintln!("[myelin-bench] running {name}");
}

async fn single(a: TargetArgs, names: &[&str]) -> anyhow::Result<()> {
    let names: Vec<String> = names.iter().map(|s| s.to_string()).collect();
    let target = Target {
        label: &a.label,
        url: &a.url,
        pid: a.pid,
        db_path: a.db_path.as_deref(),
        setup_concurrency: a.setup_concurrency,
    };
    let report = run(&target, &names, &a.sizes.params(), &progress).await?;
    print!("{}", report.table());
    if let Some(path) = &a.json {
        write_json(path, &report)?;
    }
    Ok(())
}

fn write_json<T: serde::Serialize>(path: &Path, value: &T) -> anyhow::Result<()> {
    if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent)
            .with_context(|| format!("creating {}", parent.display()))?;
    }
    std::fs::write(path, serde_json::to_string_pretty(value)?)
        .with_context(|| format!("writing {}", path.display()))?;
    eprintln!("[myelin-bench] wrote {}", path.display());
    Ok(())
}

/// CPU model, core count and load average, for the record.
fn machine() -> String {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|t| {
            t.lines().find_map(|l| {
                l.strip_prefix("model name")
                    .map(|r| r.trim_start_matches([' ', '\t', ':']).to_owned())
            })
        })
        .unwrap_or_else(|| "unknown CPU".into());
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    let load = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    let load: Vec<&str> = load.split_whitespace().take(3).collect();
    format!(
        "{cpu}, {cores} cores, load average at start {}",
        load.join(" ")
    )
}

async fn run_server(
    mut server: Server,
    label: &str,
    names: &[String],
    a: &CompareArgs,
    ready: Duration,
) -> anyhow::Result<RunReport> {
    eprintln!(
        "[myelin-bench] {label}: waiting for {} (log {})",
        server.url,
        server.log.display()
    );
    server.wait_ready(ready).await?;
    let target = Target {
        label,
        url: &server.url,
        pid: Some(server.pid()),
        db_path: Some(&server.db_path),
        setup_concurrency: a.setup_concurrency,
    };
    let report = run(&target, names, &a.sizes.params(), &|n| {
        eprintln!("[myelin-bench] {label}: running {n}")
    })
    .await;
    server.stop();
    let report = report?;
    print!("{}", report.table());
    Ok(report)
}

async fn compare(a: CompareArgs) -> anyhow::Result<()> {
    let names: Vec<String> = if a.workloads.is_empty() {
        ALL.iter().map(|s| s.to_string()).collect()
    } else {
        a.workloads.clone()
    };
    if let Some(bad) = names.iter().find(|n| !ALL.contains(&n.as_str())) {
        bail!("unknown workload {bad}; known: {}", ALL.join(", "));
    }
    let (do_myelin, do_synapse) = match a.only.as_deref() {
        None => (true, true),
        Some("myelin") => (true, false),
        Some("synapse") => (false, true),
        Some(other) => bail!("--only takes myelin or synapse, not {other}"),
    };
    let machine = machine();
    eprintln!("[myelin-bench] machine: {machine}");
    let myelin_report = if do_myelin {
        let dir = a.work_dir.join("myelin");
        let mut server = myelin::start(&a.myelin_bin, &dir, true)?;
        if server.wait_ready(Duration::from_secs(60)).await.is_err()
            && myelin::rejected_rate_limits(&server.log)
        {
            eprintln!(
                "[myelin-bench] this Myelin has no [rate_limits] section; starting it without"
            );
            server.stop();
            server = myelin::start(&a.myelin_bin, &dir, false)?;
        }
        Some(run_server(server, "myelin", &names, &a, Duration::from_secs(60)).await?)
    } else {
        None
    };
    let synapse_report = if do_synapse {
        let version = synapse::version(&a.synapse_venv)?;
        let server = synapse::start(&a.synapse_venv, &a.work_dir.join("synapse"))?;
        let label = format!("synapse {version}");
        Some(run_server(server, &label, &names, &a, Duration::from_secs(180)).await?)
    } else {
        None
    };
    let report = CompareReport::new(machine, myelin_report, synapse_report);
    println!("\nMachine: {}\n", report.machine);
    print!("{}", report.table());
    write_json(&a.json, &report)?;
    if !a.no_chart {
        draw_chart(&a)?;
    }
    Ok(())
}

fn draw_chart(a: &CompareArgs) -> anyhow::Result<()> {
    let python = a.synapse_venv.join("bin").join("python");
    let status = std::process::Command::new(&python)
        .arg(&a.chart_script)
        .arg(&a.json)
        .arg(&a.chart)
        .status();
    match status {
        Ok(s) if s.success() => eprintln!("[myelin-bench] wrote {}", a.chart.display()),
        Ok(s) => eprintln!("[myelin-bench] warning: the chart script failed ({s}); the JSON and table are complete"),
        Err(e) => eprintln!("[myelin-bench] warning: cannot run {}: {e}; no chart", python.display()),
    }
    Ok(())
}
