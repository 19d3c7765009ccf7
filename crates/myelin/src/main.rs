//! The `myelin` command line: `myelin serve` runs the homeserver, `myelin user ...` manages
//! accounts directly in the database, `myelin db ...` the database itself and `myelin media ...`
//! the media repository.
//!
//! Configuration comes from `--config PATH` (or `MYELIN_CONFIG`); without it, from
//! `<data_dir>/myelin.toml` when that exists. `myelin serve` writes that file (the defaults, with
//! the server name and data dir in use) on first start if there is none. `MYELIN_*` variables override either.

use std::io::{BufRead, IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{bail, Context};
use clap::{Parser, Subcommand};
use myelin::{Config, Myelin};

mod db;

/// The name of the configuration file `myelin serve` looks for (and generates) in the data dir.
const DATA_DIR_CONFIG: &str = "myelin.toml";

#[derive(Parser)]
#[command(name = "myelin", version, about = "Myelin, a Matrix homeserver")]
struct Cli {
    /// The configuration file (default: <data_dir>/myelin.toml if it exists).
    #[arg(
        long,
        short = 'c',
        value_name = "PATH",
        env = "MYELIN_CONFIG",
        global = true
    )]
    config: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the homeserver.
    Serve,
    /// Manage user accounts.
    User {
        #[command(subcommand)]
        command: UserCommand,
    },
    /// Manage the database: migrate, status, copy between backends.
    Db {
        #[command(subcommand)]
        command: db::DbCommand,
    },
    /// Manage media: delete a user's or a room's, quarantine, purge the remote cache.
    Media {
        #[command(subcommand)]
        command: myelin::media::MediaCommand,
    },
}

#[derive(Subcommand)]
enum UserCommand {
    /// Create an account (works whatever the registration mode).
    Create {
        /// The localpart (`alice`) or full user ID (`@alice:example.org`).
        name: String,
        /// Make the account a server admin.
        #[arg(long)]
        admin: bool,
        /// Read the password from this file (default: one line from standard input).
        #[arg(long, value_name = "FILE")]
        password_file: Option<PathBuf>,
    },
    /// Set a new password for an existing account.
    ResetPassword {
        /// The localpart (`alice`) or full user ID (`@alice:example.org`).
        name: String,
        /// Read the password from this file (default: one line from standard input).
        #[arg(long, value_name = "FILE")]
        password_file: Option<PathBuf>,
    },
}

fn main() -> ExitCode {
    return_large_allocations_to_the_os();
    let cli = Cli::parse();
    match real_main(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// glibc raises its mmap threshold after the first large free, after which the ~19 MiB buffers
/// of each argon2 hash come from per-thread heaps and are kept: measured, 500 registrations left
/// 3 GiB resident. A fixed threshold keeps big buffers in mmap, returned to the OS on free (the
/// same run then ends at 35 MiB).
fn return_large_allocations_to_the_os() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only changes allocator tuning; it is called before any other thread exists.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 1024 * 1024);
    }
}

fn real_main(cli: Cli) -> anyhow::Result<()> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    match cli.command {
        Command::Serve => {
            let config = load_config(cli.config.as_deref(), true)?;
            init_logging(&config);
            runtime.block_on(serve(config))
        }
        Command::User { command } => {
            let config = load_config(cli.config.as_deref(), false)?;
            init_logging(&config);
            runtime.block_on(user(config, command))
        }
        Command::Db { command } => {
            let config = load_config(cli.config.as_deref(), false)?;
            init_logging(&config);
            runtime.block_on(db::run(config, command))
        }
        Command::Media { command } => {
            let config = load_config(cli.config.as_deref(), false)?;
            init_logging(&config);
            let summary = runtime.block_on(myelin::media::run(config, command))?;
            println!("{summary}");
            Ok(())
        }
    }
}

/// Loads and validates the configuration. Without an explicit file, uses `<data_dir>/myelin.toml`
/// if it exists; otherwise, when `generate` is set, writes a default configuration there.
fn load_config(explicit: Option<&Path>, generate: bool) -> anyhow::Result<Config> {
    let config = match explicit {
        Some(path) => Config::load(Some(path))?,
        None => {
            let env_only = Config::load(None)?;
            let path = env_only.data_dir.join(DATA_DIR_CONFIG);
            if path.exists() {
                Config::load(Some(&path))?
            } else {
                if generate {
                    env_only.validate()?;
                    // The defaults, keeping what ties the file to this data: the server name
                    // (baked into every ID) and the data directory. Other MYELIN_* variables
                    // stay overrides and are not persisted (they may hold secrets).
                    let generated = Config {
                        server_name: env_only.server_name.clone(),
                        ..Config::for_data_dir(env_only.data_dir.clone())
                    };
                    write_generated_config(&generated, &path)?;
                    println!("Wrote a new configuration file to {}", path.display());
                }
                env_only
            }
        }
    };
    config.validate()?;
    Ok(config)
}

/// Writes `config` to `path` with a commented header, owner-only (it may hold registration
/// tokens), atomically.
fn write_generated_config(config: &Config, path: &Path) -> anyhow::Result<()> {
    myelin::create_data_dir(path.parent().unwrap_or(Path::new(".")))?;
    let body = config.to_toml_string()?;
    let text = format!(
        "# Myelin configuration, generated on first start.\n\
         #\n\
         # `myelin serve` reads this file when started without --config / MYELIN_CONFIG and with this\n\
         # data directory. Edit it and restart to change settings; MYELIN_* environment variables\n\
         # override it. config.example.toml in the Myelin repository documents every option.\n\n{body}"
    );
    let tmp = path.with_extension("toml.tmp");
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let write = || -> std::io::Result<()> {
        let mut file = options.open(&tmp)?;
        file.write_all(text.as_bytes())?;
        file.sync_all()?;
        drop(file);
        std::fs::rename(&tmp, path)
    };
    write().with_context(|| format!("cannot write the configuration file {}", path.display()))
}

/// Logs to standard error with the configured filter; `RUST_LOG` overrides it.
fn init_logging(config: &Config) {
    use tracing_subscriber::EnvFilter;
    let filter = std::env::var("RUST_LOG")
        .ok()
        .filter(|s| !s.trim().is_empty())
        .and_then(|s| match EnvFilter::try_new(&s) {
            Ok(f) => Some(f),
            Err(e) => {
                eprintln!("warning: ignoring invalid RUST_LOG {s:?}: {e}");
                None
            }
        })
        .unwrap_or_else(|| EnvFilter::new(&config.log));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .init();
}

async fn serve(config: Config) -> anyhow::Result<()> {
    // Handlers first, so a signal arriving right after the listening line is a clean shutdown.
    let shutdown = shutdown_signal()?;
    let server = Myelin::open_to_serve(config.clone()).await?;
    reload_on_sighup(server.appservice_reloader())?;
    let listener = bind(&config.listen).await?;
    let tls_listener = match &config.tls.listen {
        Some(addr) => Some(bind(addr).await?),
        None => None,
    };
    {
        let mut stdout = std::io::stdout().lock();
        let mut announce = |scheme: &str, listener: &tokio::net::TcpListener| {
            let addr = listener
                .local_addr()
                .context("cannot read the bound address")?;
            writeln!(stdout, "Myelin listening on {scheme}://{addr}")
                .context("cannot write to stdout")
        };
        announce("http", &listener)?;
        if let Some(tls_listener) = &tls_listener {
            announce("https", tls_listener)?;
        }
        stdout.flush().context("cannot write to stdout")?;
    }
    server.serve_with(listener, tls_listener, shutdown).await
}

async fn bind(addr: &str) -> anyhow::Result<tokio::net::TcpListener> {
    tokio::net::TcpListener::bind(addr)
        .await
        .with_context(|| format!("cannot listen on {addr}"))
}

/// Reads the application-service registration files again on every SIGHUP.
fn reload_on_sighup(
    reload: impl Fn() -> anyhow::Result<usize> + Send + Sync + 'static,
) -> anyhow::Result<()> {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        let mut hup = signal(SignalKind::hangup()).context("cannot handle SIGHUP")?;
        tokio::spawn(async move {
            while hup.recv().await.is_some() {
                match reload() {
                    Ok(count) => tracing::info!(count, "application services reloaded"),
                    Err(e) => tracing::error!(
                        error = %e,
                        "application services not reloaded; the previous registrations stay"
                    ),
                }
            }
        });
    }
    #[cfg(not(unix))]
    drop(reload);
    Ok(())
}

/// Resolves on the first SIGINT or SIGTERM (Ctrl-C elsewhere).
fn shutdown_signal() -> anyhow::Result<impl std::future::Future<Output = ()> + Send + 'static> {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        let mut term = signal(SignalKind::terminate()).context("cannot handle SIGTERM")?;
        let mut int = signal(SignalKind::interrupt()).context("cannot handle SIGINT")?;
        Ok(async move {
            let name = tokio::select! {
                _ = term.recv() => "SIGTERM",
                _ = int.recv() => "SIGINT",
            };
            tracing::info!("received {name}");
        })
    }
    #[cfg(not(unix))]
    {
        Ok(async {
            let _ = tokio::signal::ctrl_c().await;
            tracing::info!("received Ctrl-C");
        })
    }
}

async fn user(config: Config, command: UserCommand) -> anyhow::Result<()> {
    match command {
        UserCommand::Create {
            name,
            admin,
            password_file,
        } => {
            let localpart = localpart(&name, &config.server_name)?;
            let password = read_password(password_file.as_deref())?;
            let server = Myelin::open(config).await?;
            let user_id = server
                .services()
                .accounts
                .create_user(&localpart, Some(&password), admin)
                .await
                .with_context(|| format!("cannot create user {name}"))?;
            println!(
                "Created {}user {user_id}",
                if admin { "admin " } else { "" }
            );
        }
        UserCommand::ResetPassword {
            name,
            password_file,
        } => {
            let localpart = localpart(&name, &config.server_name)?;
            let user_id =
                ruma::OwnedUserId::try_from(format!("@{localpart}:{}", config.server_name))
                    .with_context(|| format!("{name:?} is not a valid user name"))?;
            let password = read_password(password_file.as_deref())?;
            let server = Myelin::open(config).await?;
            server
                .services()
                .accounts
                .set_password(&user_id, &password)
                .await
                .with_context(|| format!("cannot reset the password of {user_id}"))?;
            println!("Password of {user_id} reset");
        }
    }
    Ok(())
}

/// The localpart of `name`, which is a localpart or a user ID on this server.
fn localpart(name: &str, server_name: &str) -> anyhow::Result<String> {
    let Some(rest) = name.strip_prefix('@') else {
        if name.is_empty() {
            bail!("the user name must not be empty");
        }
        return Ok(name.to_owned());
    };
    let Some((local, server)) = rest.split_once(':') else {
        bail!("{name:?} is not a user ID (expected @localpart:{server_name} or just localpart)");
    };
    if server != server_name {
        bail!("{name} is not on this server ({server_name})");
    }
    Ok(local.to_owned())
}

/// The password from `file` (its first line) or from one line of standard input.
fn read_password(file: Option<&Path>) -> anyhow::Result<String> {
    let raw = match file {
        Some(path) => std::fs::read_to_string(path)
            .with_context(|| format!("cannot read the password file {}", path.display()))?,
        None => {
            let stdin = std::io::stdin();
            if stdin.is_terminal() {
                eprint!("Password (will be echoed): ");
                let _ = std::io::stderr().flush();
            }
            let mut line = String::new();
            stdin
                .lock()
                .read_line(&mut line)
                .context("cannot read the password from standard input")?;
            line
        }
    };
    let password = raw.lines().next().unwrap_or("").to_owned();
    if password.is_empty() {
        bail!("the password is empty");
    }
    Ok(password)
}
