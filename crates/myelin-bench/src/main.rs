//! The `myelin-bench` command line: one subcommand per workload, `all`, and `compare`.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{bail, Context};
use clap::{Parser, Subcommand};

use myelin_bench::cli::Sizes;
use myelin_bench::compare::cluster::Cluster;
use myelin_bench::compare::pg_sampler::PgSampler;
use myelin_bench::compare::postgres::{PgAdmin, PgDatabase};
use myelin_bench::compare::{
    myelin, process::Server, synapse, Backend, BackendPair, CompareReport, Database,
};
use myelin_bench::resources::mib;
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
    /// Latency from a send to its notification's arrival at a push gateway (a stub served by
    /// the bench on loopback), through another member's HTTP pusher.
    Push(TargetArgs),
    /// The first /sync of a user in many rooms, lazy-loading and full state.
    InitialSync(TargetArgs),
    /// Wake-up latency of many long-polling /sync requests while messages flow.
    IncrementalSync(TargetArgs),
    /// Create, join and leave rooms of growing member counts.
    Join(TargetArgs),
    /// Simplified sliding sync (MSC4186): Element X's first room-list response and the
    /// wake-up of a pending long-poll.
    SlidingSync(TargetArgs),
    /// Throughput of media uploads, then downloads, of 1 MiB and 10 MiB files.
    Upload(TargetArgs),
    /// Every workload, one after the other.
    All(TargetArgs),
    /// Start Myelin and Synapse in turn on fresh data directories (and fresh PostgreSQL
    /// databases), run the same workloads against each, and print the figures side by side.
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
    /// The storage backends, comma-separated: sqlite, postgres (default: sqlite, plus postgres
    /// when a PostgreSQL server is reachable).
    #[arg(long, value_delimiter = ',')]
    backends: Vec<Backend>,
    /// A PostgreSQL server to create the run databases on (a URL whose user may create
    /// databases); without it, the throwaway cluster of --postgres-script is started (or reused)
    /// in --postgres-dir.
    #[arg(long)]
    postgres_url: Option<String>,
    /// The script that starts the throwaway PostgreSQL cluster.
    #[arg(long, default_value = "scripts/postgres-start")]
    postgres_script: PathBuf,
    /// Where the throwaway PostgreSQL cluster lives (stopped at the end if this run started it).
    /// Default: a directory of its own under the system's temporary directory, since the
    /// `postgres` system user must be able to reach it (a checkout under a private home or
    /// `mktemp -d` directory is not).
    #[arg(long)]
    postgres_dir: Option<PathBuf>,
    /// Allow a PostgreSQL server that is not durable (fsync or synchronous_commit off), and start
    /// the throwaway cluster fast (without `--durable`): for development only, as a 200 then does
    /// not mean the write is on disk. By default the server must be durable.
    #[arg(long)]
    postgres_fast: bool,
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
            Command::Push(a) => single(a, &["push"]).await,
            Command::InitialSync(a) => single(a, &["initial-sync"]).await,
            Command::IncrementalSync(a) => single(a, &["incremental-sync"]).await,
            Command::Join(a) => single(a, &["join"]).await,
            Command::SlidingSync(a) => single(a, &["sliding-sync"]).await,
            Command::Upload(a) => single(a, &["upload"]).await,
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

/// Runs the workloads against a started server, then stops it. On PostgreSQL, also samples
/// the database's backend processes and measures the database.
async fn run_server(
    mut server: Server,
    label: &str,
    names: &[String],
    a: &CompareArgs,
    ready: Duration,
    pg: Option<&PgDatabase>,
) -> anyhow::Result<RunReport> {
    eprintln!(
        "[myelin-bench] {label}: waiting for {} (log {})",
        server.url,
        server.log.display()
    );
    server.wait_ready(ready).await?;
    let sampler = match pg {
        Some(db) => Some(PgSampler::start(db).await?),
        None => None,
    };
    let target = Target {
        label,
        url: &server.url,
        pid: Some(server.pid()),
        db_path: server.db_path.as_deref(),
        setup_concurrency: a.setup_concurrency,
    };
    let report = run(&target, names, &a.sizes.params(), &|n| {
        eprintln!("[myelin-bench] {label}: running {n}")
    })
    .await;
    let pg_use = match sampler {
        Some(s) => Some(s.finish().await),
        None => None,
    };
    let pg_size = match pg {
        Some(db) if report.is_ok() => Some(db.size().await?),
        _ => None,
    };
    server.stop();
    let mut report = report?;
    if let Some(u) = pg_use {
        report.resources.pg_peak_pss_mib = u.peak_pss_mib;
        report.resources.pg_cpu_s = u.cpu_s;
    }
    if let Some(bytes) = pg_size {
        report.resources.db_size_mib = Some(mib(bytes));
    }
    print!("{}", report.table());
    Ok(report)
}

/// Which server a run starts.
enum Which<'a> {
    Myelin,
    /// With its version.
    Synapse(&'a str),
}

/// Starts Myelin; a build that rejects `[rate_limits]` is restarted without it.
async fn start_myelin(a: &CompareArgs, dir: &Path, db: Database<'_>) -> anyhow::Result<Server> {
    let mut server = myelin::start(&a.myelin_bin, dir, db, true)?;
    if server.wait_ready(Duration::from_secs(60)).await.is_err()
        && myelin::rejected_rate_limits(&server.log)
    {
        eprintln!("[myelin-bench] this Myelin has no [rate_limits] section; starting it without");
        server.stop();
        server = myelin::start(&a.myelin_bin, dir, db, false)?;
    }
    Ok(server)
}

/// One server on one backend: a fresh data directory `<work-dir>/<server>-<backend>` and, on
/// PostgreSQL, a fresh database, dropped afterwards.
async fn run_on(
    a: &CompareArgs,
    which: Which<'_>,
    backend: Backend,
    pg: Option<&PgAdmin>,
    names: &[String],
) -> anyhow::Result<RunReport> {
    let (server_name, label, ready) = match which {
        Which::Myelin => ("myelin", format!("myelin/{backend}"), 60),
        Which::Synapse(v) => ("synapse", format!("synapse {v}/{backend}"), 180),
    };
    let dir = a.work_dir.join(format!("{server_name}-{backend}"));
    let pg_db = match backend {
        Backend::Sqlite => None,
        Backend::Postgres => {
            let admin = pg.context("no PostgreSQL server for the postgres backend")?;
            let db = admin.create_run_database(server_name).await?;
            eprintln!("[myelin-bench] {label}: fresh database {}", db.name());
            Some(db)
        }
    };
    let db = pg_db.as_ref().map_or(Database::Sqlite, Database::Postgres);
    let result = async {
        let server = match which {
            Which::Myelin => start_myelin(a, &dir, db).await?,
            Which::Synapse(_) => synapse::start(&a.synapse_venv, &dir, db)?,
        };
        let ready = Duration::from_secs(ready);
        run_server(server, &label, names, a, ready, pg_db.as_ref()).await
    }
    .await;
    if let Some(db) = pg_db {
        let name = db.name().to_owned();
        if let Err(e) = db.drop_database().await {
            eprintln!("[myelin-bench] warning: could not drop database {name}: {e}");
        }
    }
    result
}

/// The PostgreSQL server to run on: `--postgres-url`, or the throwaway cluster (started into
/// `cluster`). Checks that databases can be created, and drops those of dead earlier runs.
async fn postgres(a: &CompareArgs, cluster: &mut Option<Cluster>) -> anyhow::Result<PgAdmin> {
    let url = match &a.postgres_url {
        Some(url) => url.clone(),
        None => {
            let dir = a.postgres_dir.clone().unwrap_or_else(|| {
                std::env::temp_dir().join(format!("myelin-bench-pg-{}", std::process::id()))
            });
            eprintln!(
                "[myelin-bench] starting the PostgreSQL cluster in {} ({})",
                dir.display(),
                a.postgres_script.display()
            );
            let started = Cluster::start(&a.postgres_script, &dir, !a.postgres_fast)?;
            let url = started.url.clone();
            *cluster = Some(started);
            url
        }
    };
    let admin = PgAdmin::new(&url)?;
    admin.check().await?;
    if !a.postgres_fast && !admin.is_durable().await? {
        bail!(
            "{} runs with fsync or synchronous_commit off; start it durable \
             (scripts/postgres-start --durable DIR) or pass --postgres-fast",
            admin.target()
        );
    }
    for name in admin.drop_stale().await? {
        eprintln!("[myelin-bench] dropped {name}, left behind by an earlier run");
    }
    Ok(admin)
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
    // Explicit backends must all work; by default PostgreSQL is used when it can be.
    let explicit = !a.backends.is_empty();
    let mut cluster = None;
    let pg = if !explicit || a.backends.contains(&Backend::Postgres) {
        match postgres(&a, &mut cluster).await {
            Ok(admin) => Some(admin),
            Err(e) if !explicit => {
                eprintln!("[myelin-bench] no PostgreSQL ({e:#}); comparing on SQLite only");
                None
            }
            Err(e) => return Err(e.context("--backends includes postgres")),
        }
    } else {
        None
    };
    let mut backends: Vec<Backend> = Vec::new();
    let wanted = if explicit {
        a.backends.clone()
    } else {
        let mut b = vec![Backend::Sqlite];
        b.extend(pg.as_ref().map(|_| Backend::Postgres));
        b
    };
    for b in wanted {
        if !backends.contains(&b) {
            backends.push(b);
        }
    }
    let synapse_version = if do_synapse {
        Some(synapse::version(&a.synapse_venv)?)
    } else {
        None
    };
    let mut machine = machine();
    if let Some(admin) = &pg {
        machine = format!("{machine}; {}", admin.describe_server().await?);
    }
    eprintln!("[myelin-bench] machine: {machine}");
    eprintln!(
        "[myelin-bench] backends: {}",
        backends
            .iter()
            .map(|b| b.name())
            .collect::<Vec<_>>()
            .join(", ")
    );
    let mut pairs = Vec::new();
    for &backend in &backends {
        let myelin_report = if do_myelin {
            Some(run_on(&a, Which::Myelin, backend, pg.as_ref(), &names).await?)
        } else {
            None
        };
        let synapse_report = match &synapse_version {
            Some(v) => Some(run_on(&a, Which::Synapse(v), backend, pg.as_ref(), &names).await?),
            None => None,
        };
        pairs.push(BackendPair::new(backend, myelin_report, synapse_report));
    }
    if let Some(mut c) = cluster.take() {
        c.stop();
    }
    let report = CompareReport::new(machine, pairs);
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
