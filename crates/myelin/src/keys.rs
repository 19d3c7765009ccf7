//! The server's ed25519 signing key, kept in `<data_dir>/signing.key`.
//!
//! The file is one line, `ed25519 <version> <base64 of the PKCS#8 DER key>`, readable only by its
//! owner. It is generated on first start (written to a temporary file, synced, then renamed so a
//! crash never leaves a half-written key) and loaded on every later start.

use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context};
use base64::Engine as _;
use rand::distributions::{Alphanumeric, DistString};
use ruma::signatures::Ed25519KeyPair;
use ruma::OwnedServerName;

use myelin_room::SigningKey;

/// The key file's name inside the data directory.
pub const KEY_FILE: &str = "signing.key";

const ALGORITHM: &str = "ed25519";

/// The key file of `data_dir`.
pub fn key_path(data_dir: &Path) -> PathBuf {
    data_dir.join(KEY_FILE)
}

/// Loads the signing key from `data_dir`, generating and saving a new one if there is none.
pub fn load_or_generate(
    data_dir: &Path,
    server_name: OwnedServerName,
) -> anyhow::Result<SigningKey> {
    let path = key_path(data_dir);
    let key_pair = match std::fs::read_to_string(&path) {
        Ok(text) => {
            warn_if_readable_by_others(&path);
            parse_key(&text)
                .with_context(|| format!("invalid signing key file {}", path.display()))?
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let (line, key_pair) = generate()?;
            write_private(&path, line.as_bytes())
                .with_context(|| format!("cannot write signing key file {}", path.display()))?;
            tracing::info!(path = %path.display(), version = key_pair.version(), "generated a new signing key");
            key_pair
        }
        Err(e) => {
            return Err(e)
                .with_context(|| format!("cannot read signing key file {}", path.display()))
        }
    };
    Ok(SigningKey {
        server_name,
        key_pair,
    })
}

/// A new key: its file line and the loaded key pair.
fn generate() -> anyhow::Result<(String, Ed25519KeyPair)> {
    let der = Ed25519KeyPair::generate();
    let version = format!(
        "a_{}",
        Alphanumeric.sample_string(&mut rand::thread_rng(), 4)
    );
    let key_pair = Ed25519KeyPair::from_der(&der, version.clone())
        .map_err(|e| anyhow::anyhow!("cannot load the generated signing key: {e}"))?;
    let line = format!(
        "{ALGORITHM} {version} {}\n",
        base64::engine::general_purpose::STANDARD.encode(&*der)
    );
    Ok((line, key_pair))
}

/// Parses `ed25519 <version> <base64 DER>`.
fn parse_key(text: &str) -> anyhow::Result<Ed25519KeyPair> {
    let parts: Vec<&str> = text.split_whitespace().collect();
    let [algorithm, version, key] = parts.as_slice() else {
        bail!("expected one line `ed25519 <version> <base64 key>`");
    };
    if *algorithm != ALGORITHM {
        bail!("unsupported key algorithm {algorithm:?} (only ed25519)");
    }
    if version.is_empty()
        || !version
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_')
    {
        bail!("invalid key version {version:?}");
    }
    let der = base64::engine::general_purpose::STANDARD
        .decode(key)
        .or_else(|_| base64::engine::general_purpose::STANDARD_NO_PAD.decode(key))
        .context("the key is not valid base64")?;
    Ed25519KeyPair::from_der(&der, (*version).to_owned())
        .map_err(|e| anyhow::anyhow!("the key is not a valid ed25519 key: {e}"))
}

/// Writes `contents` to `path` with owner-only permissions, atomically and durably.
pub(crate) fn write_private(path: &Path, contents: &[u8]) -> std::io::Result<()> {
    let tmp = path.with_extension("key.tmp");
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let mut file = options.open(&tmp)?;
    #[cfg(unix)]
    {
        // The mode only applies to newly created files; make sure a stale temp file is private too.
        use std::os::unix::fs::PermissionsExt;
        file.set_permissions(std::fs::Permissions::from_mode(0o600))?;
    }
    file.write_all(contents)?;
    file.sync_all()?;
    drop(file);
    std::fs::rename(&tmp, path)?;
    sync_dir(path.parent().unwrap_or(Path::new(".")));
    Ok(())
}

/// Makes a rename in `dir` durable (best effort: not every platform can open a directory).
fn sync_dir(dir: &Path) {
    let dir = if dir.as_os_str().is_empty() {
        Path::new(".")
    } else {
        dir
    };
    if let Ok(d) = std::fs::File::open(dir) {
        let _ = d.sync_all();
    }
}

fn warn_if_readable_by_others(path: &Path) {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        if let Ok(meta) = std::fs::metadata(path) {
            if meta.permissions().mode() & 0o077 != 0 {
                tracing::warn!(path = %path.display(), "the signing key file is readable by other users; chmod 600 it");
            }
        }
    }
    #[cfg(not(unix))]
    let _ = path;
}

#[cfg(test)]
mod tests {
    use super::*;

    fn temp_dir() -> PathBuf {
        use rand::Rng;
        let n: u64 = rand::thread_rng().gen();
        let dir = std::env::temp_dir().join(format!("myelin-keys-test-{n:x}"));
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    #[test]
    fn generate_then_load_same_key() {
        let dir = temp_dir();
        let name: OwnedServerName = "example.org".try_into().unwrap();
        let first = load_or_generate(&dir, name.clone()).unwrap();
        let text = std::fs::read_to_string(key_path(&dir)).unwrap();
        let parts: Vec<&str> = text.split_whitespace().collect();
        assert_eq!(parts.len(), 3);
        assert_eq!(parts[0], "ed25519");
        assert!(
            parts[1].starts_with("a_") && parts[1].len() == 6,
            "{}",
            parts[1]
        );
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(key_path(&dir))
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        let second = load_or_generate(&dir, name).unwrap();
        assert_eq!(first.key_pair.version(), second.key_pair.version());
        assert_eq!(first.key_pair.public_key(), second.key_pair.public_key());
        assert!(!dir.join("signing.key.tmp").exists());
        let _ = std::fs::remove_dir_all(dir);
    }

    #[test]
    fn corrupt_key_is_an_error() {
        let dir = temp_dir();
        std::fs::write(key_path(&dir), "ed25519 a_abcd !!!notbase64\n").unwrap();
        let e = load_or_generate(&dir, "example.org".try_into().unwrap())
            .err()
            .unwrap();
        assert!(format!("{e:#}").contains("signing key"), "{e:#}");
        std::fs::write(key_path(&dir), "rsa a_abcd AAAA\n").unwrap();
        assert!(load_or_generate(&dir, "example.org".try_into().unwrap()).is_err());
        let _ = std::fs::remove_dir_all(dir);
    }
}
