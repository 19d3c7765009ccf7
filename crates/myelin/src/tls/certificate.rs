//! The HTTPS listener's certificate: PEM files read from disk, or a self-signed certificate
//! generated once into the data directory (for test networks, whose peers are told to skip
//! certificate checks for this server).

use std::path::{Path, PathBuf};

use ruma::ServerName;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

use super::TlsError;
use crate::keys::write_private;

/// The self-signed certificate's file inside `<data_dir>/tls/`.
pub const CERTIFICATE_FILE: &str = "certificate.pem";
/// The self-signed certificate's private key inside `<data_dir>/tls/`.
pub const PRIVATE_KEY_FILE: &str = "private_key.pem";

/// A freshly generated self-signed certificate and its private key, both PEM.
pub struct SelfSigned {
    pub certificate_pem: String,
    pub private_key_pem: String,
}

/// The names a self-signed certificate for `server_name` covers: its host (without port or IPv6
/// brackets), then `localhost` and `127.0.0.1` so that local tools can connect by either.
pub fn self_signed_hosts(server_name: &ServerName) -> Vec<String> {
    let host = server_name.host();
    let host = host
        .strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .unwrap_or(host);
    let mut hosts = vec![host.to_owned()];
    for extra in ["localhost", "127.0.0.1"] {
        if !hosts.iter().any(|h| h.eq_ignore_ascii_case(extra)) {
            hosts.push(extra.to_owned());
        }
    }
    hosts
}

/// A self-signed certificate for `hosts` (an IP address SAN for each IP literal, a DNS SAN for
/// each other name; the first host is also the common name) with a new ECDSA P-256 key.
pub fn generate_self_signed(hosts: &[String]) -> Result<SelfSigned, TlsError> {
    let failed = |error: rcgen::Error| TlsError::Generate {
        hosts: hosts.to_vec(),
        error: error.to_string(),
    };
    let mut params = rcgen::CertificateParams::new(hosts.to_vec()).map_err(failed)?;
    let mut name = rcgen::DistinguishedName::new();
    if let Some(first) = hosts.first() {
        name.push(rcgen::DnType::CommonName, first.as_str());
    }
    params.distinguished_name = name;
    let key = rcgen::KeyPair::generate().map_err(failed)?;
    let certificate = params.self_signed(&key).map_err(failed)?;
    Ok(SelfSigned {
        certificate_pem: certificate.pem(),
        private_key_pem: key.serialize_pem(),
    })
}

/// The certificate and key files in `dir`, generating them for `hosts` if either is missing.
///
/// An existing pair is reused as it is (the server name, hence the hosts, never changes for a
/// data directory).
pub fn load_or_generate_self_signed(
    dir: &Path,
    hosts: &[String],
) -> Result<(PathBuf, PathBuf), TlsError> {
    let certificate = dir.join(CERTIFICATE_FILE);
    let private_key = dir.join(PRIVATE_KEY_FILE);
    if certificate.is_file() && private_key.is_file() {
        return Ok((certificate, private_key));
    }
    create_private_dir(dir)?;
    let generated = generate_self_signed(hosts)?;
    // The key first: a crash between the two writes leaves no certificate, so the next start
    // generates both again instead of pairing a certificate with a key it does not belong to.
    write_private(&private_key, generated.private_key_pem.as_bytes()).map_err(|error| {
        TlsError::Write {
            what: "self-signed private key",
            path: private_key.clone(),
            error,
        }
    })?;
    write_private(&certificate, generated.certificate_pem.as_bytes()).map_err(|error| {
        TlsError::Write {
            what: "self-signed certificate",
            path: certificate.clone(),
            error,
        }
    })?;
    tracing::info!(path = %certificate.display(), ?hosts, "generated a self-signed TLS certificate");
    Ok((certificate, private_key))
}

/// Reads a PEM certificate chain (leaf first) and a PEM private key (PKCS#8, PKCS#1 or SEC1).
pub fn load(
    certificate: &Path,
    private_key: &Path,
) -> Result<(Vec<CertificateDer<'static>>, PrivateKeyDer<'static>), TlsError> {
    let what = "certificate";
    let pem = read(what, certificate)?;
    let chain = CertificateDer::pem_slice_iter(&pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| pem_error(what, certificate, e.to_string()))?;
    if chain.is_empty() {
        return Err(pem_error(what, certificate, "no CERTIFICATE block".into()));
    }
    let what = "private key";
    let pem = read(what, private_key)?;
    let key = PrivateKeyDer::from_pem_slice(&pem).map_err(|e| {
        let message = match e {
            rustls::pki_types::pem::Error::NoItemsFound => "no PRIVATE KEY block".to_owned(),
            other => other.to_string(),
        };
        pem_error(what, private_key, message)
    })?;
    Ok((chain, key))
}

fn read(what: &'static str, path: &Path) -> Result<Vec<u8>, TlsError> {
    std::fs::read(path).map_err(|error| TlsError::Read {
        what,
        path: path.to_owned(),
        error,
    })
}

fn pem_error(what: &'static str, path: &Path, message: String) -> TlsError {
    TlsError::Pem {
        what,
        path: path.to_owned(),
        message,
    }
}

/// Creates `dir` (owner-only on unix: it holds a private key) if it does not exist.
fn create_private_dir(dir: &Path) -> Result<(), TlsError> {
    let mut builder = std::fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::DirBuilderExt;
        builder.mode(0o700);
    }
    builder.create(dir).map_err(|error| TlsError::Write {
        what: "TLS directory",
        path: dir.to_owned(),
        error,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hosts(name: &str) -> Vec<String> {
        self_signed_hosts(<&ServerName>::try_from(name).unwrap())
    }

    #[test]
    fn hosts_cover_the_server_name_and_loopback() {
        assert_eq!(
            hosts("example.org:8448"),
            ["example.org", "localhost", "127.0.0.1"]
        );
        assert_eq!(hosts("127.0.0.1:8448"), ["127.0.0.1", "localhost"]);
        assert_eq!(hosts("[::1]:8448"), ["::1", "localhost", "127.0.0.1"]);
        assert_eq!(hosts("localhost"), ["localhost", "127.0.0.1"]);
    }

    #[test]
    fn generated_once_then_reused_and_loadable() {
        let dir = tempfile::tempdir().unwrap();
        let tls_dir = dir.path().join("tls");
        let hosts = hosts("example.org");
        let (cert, key) = load_or_generate_self_signed(&tls_dir, &hosts).unwrap();
        let first = std::fs::read(&cert).unwrap();
        let (chain, _) = load(&cert, &key).unwrap();
        assert_eq!(chain.len(), 1);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&key).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        let (cert_again, _) = load_or_generate_self_signed(&tls_dir, &hosts).unwrap();
        assert_eq!(
            std::fs::read(cert_again).unwrap(),
            first,
            "reused, not regenerated"
        );

        // A missing certificate (crash after writing the key) means a new pair.
        std::fs::remove_file(&cert).unwrap();
        load_or_generate_self_signed(&tls_dir, &hosts).unwrap();
        assert_ne!(std::fs::read(&cert).unwrap(), first);
        load(&cert, &key).unwrap();
    }

    #[test]
    fn unusable_files_are_clear_errors() {
        let dir = tempfile::tempdir().unwrap();
        let cert = dir.path().join("c.pem");
        let key = dir.path().join("k.pem");
        let e = load(&cert, &key).unwrap_err().to_string();
        assert!(
            e.contains("cannot read the certificate") && e.contains("c.pem"),
            "{e}"
        );
        std::fs::write(&cert, "not pem").unwrap();
        let e = load(&cert, &key).unwrap_err().to_string();
        assert!(e.contains("no CERTIFICATE block"), "{e}");
        let pair = generate_self_signed(&["example.org".to_owned()]).unwrap();
        std::fs::write(&cert, &pair.certificate_pem).unwrap();
        std::fs::write(&key, &pair.certificate_pem).unwrap();
        let e = load(&cert, &key).unwrap_err().to_string();
        assert!(
            e.contains("private key") && e.contains("no PRIVATE KEY block"),
            "{e}"
        );
    }
}
