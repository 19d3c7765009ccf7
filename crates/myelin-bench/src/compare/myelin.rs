//! Starting Myelin (`myelin serve`) with a generated configuration on a fresh data directory.

use std::path::Path;
use std::process::Command;

use crate::error::{BenchError, Result};

use super::process::{free_port, fresh_dir, spawn, Server};

/// The configuration: loopback listener, open registration, generous limits and, when
/// `rate_limits_section` is set, rate limiting off (older builds reject that section).
pub fn config_toml(data_dir: &Path, port: u16, rate_limits_section: bool) -> String {
    let mut text = format!(
        r#"server_name = "localhost"
listen = "127.0.0.1:{port}"
data_dir = "{dir}"
log = "warn"

[database]
backend = "sqlite"

[registration]
mode = "open"

[limits]
max_request_bytes = 10485760
max_sync_timeout_ms = 60000
"#,
        dir = data_dir
            .display()
            .to_string()
            .replace('\\', "\\\\")
            .replace('"', "\\\"")
    );
    if rate_limits_section {
        text.push_str("\n[rate_limits]\nenabled = false\n");
    }
    text
}

/// Whether a failed start was an older Myelin refusing the `[rate_limits]` section.
pub fn rejected_rate_limits(log: &Path) -> bool {
    std::fs::read_to_string(log).is_ok_and(|t| t.contains("unknown field `rate_limits`"))
}

/// Starts `binary serve` on a fresh `dir`.
pub fn start(binary: &Path, dir: &Path, rate_limits_section: bool) -> Result<Server> {
    if !binary.is_file() {
        return Err(BenchError::Invalid(format!(
            "{} not found; build it with `cargo build --release -p myelin`",
            binary.display()
        )));
    }
    let binary = std::path::absolute(binary).map_err(|e| BenchError::io(binary, e))?;
    let dir = fresh_dir(dir)?;
    let port = free_port()?;
    let config = dir.join("myelin.toml");
    std::fs::write(&config, config_toml(&dir, port, rate_limits_section))
        .map_err(|e| BenchError::io(&config, e))?;
    let mut cmd = Command::new(&binary);
    cmd.arg("serve")
        .arg("--config")
        .arg(&config)
        .current_dir(&dir);
    // Only our file configures the server.
    for (key, _) in std::env::vars() {
        if key.starts_with("MYELIN_") {
            cmd.env_remove(key);
        }
    }
    spawn(
        cmd,
        &dir.join("myelin.log"),
        format!("http://127.0.0.1:{port}"),
        dir.join("myelin.db"),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_names_port_and_dir() {
        let t = config_toml(Path::new("/tmp/x"), 4321, true);
        assert!(t.contains("listen = \"127.0.0.1:4321\""));
        assert!(t.contains("data_dir = \"/tmp/x\""));
        assert!(t.contains("mode = \"open\""));
        assert!(t.contains("[rate_limits]\nenabled = false"));
        assert!(!config_toml(Path::new("/tmp/x"), 4321, false).contains("rate_limits"));
    }
}
