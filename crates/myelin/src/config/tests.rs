//! Tests of the configuration: defaults, TOML, environment overrides and validation.

use super::*;

const EXAMPLE: &str = include_str!("../../../../config.example.toml");

fn env(vars: &[(&str, &str)]) -> Vec<(String, String)> {
    vars.iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

fn load_env(vars: &[(&str, &str)]) -> anyhow::Result<Config> {
    Config::load_with_env(None, env(vars))
}

#[test]
fn example_file_equals_defaults() {
    let parsed = Config::from_toml_str(EXAMPLE).expect("config.example.toml parses");
    assert_eq!(parsed, Config::default());
    Config::default().validate().expect("defaults are valid");
}

#[test]
fn example_file_mentions_every_option() {
    // Every option, including those without a default, appears (maybe commented out).
    let mut all = Config::default();
    all.database.path = Some("x".into());
    all.database.url = Some("postgres://x".into());
    all.database.url_file = Some("x".into());
    all.well_known.client_base_url = Some("https://x".into());
    all.well_known.support_page = Some("https://x".into());
    all.federation.well_known_server = Some("x.org:443".into());
    all.turn.shared_secret = Some("x".into());
    all.tls.listen = Some("0.0.0.0:8448".into());
    all.tls.certificate = Some("x".into());
    all.tls.private_key = Some("x".into());
    all.sso.public_baseurl = Some("https://x".into());
    let table = toml::Value::try_from(all).unwrap();
    let toml::Value::Table(table) = table else {
        unreachable!()
    };
    for (key, value) in &table {
        match value {
            toml::Value::Table(section) => {
                assert!(
                    EXAMPLE.contains(&format!("[{key}]")),
                    "section [{key}] missing from example"
                );
                for sub in section.keys() {
                    assert!(
                        EXAMPLE.contains(&format!("{sub} =")),
                        "{key}.{sub} missing from example"
                    );
                }
            }
            _ => assert!(
                EXAMPLE.contains(&format!("{key} =")),
                "{key} missing from example"
            ),
        }
    }
}

#[test]
fn serialized_defaults_round_trip() {
    let text = Config::default().to_toml_string().unwrap();
    assert_eq!(Config::from_toml_str(&text).unwrap(), Config::default());
    let mut c = Config::for_data_dir("/tmp/x".into());
    c.database.path = Some("/tmp/db".into());
    c.well_known.client_base_url = Some("https://m.example.org".into());
    c.registration.mode = RegistrationMode::Token;
    c.registration.tokens = vec!["a".into()];
    let text = c.to_toml_string().unwrap();
    assert_eq!(Config::from_toml_str(&text).unwrap(), c);
}

#[test]
fn for_data_dir_sets_only_data_dir() {
    let c = Config::for_data_dir("/srv/m".into());
    assert_eq!(c.data_dir, PathBuf::from("/srv/m"));
    assert_eq!(c.database_path(), PathBuf::from("/srv/m/myelin.db"));
    assert_eq!(
        Config {
            data_dir: Config::default().data_dir,
            ..c
        },
        Config::default()
    );
}

#[test]
fn env_overrides() {
    let c = load_env(&[
        ("MYELIN_SERVER_NAME", "example.org"),
        ("MYELIN_LISTEN", "127.0.0.1:0"),
        ("MYELIN_DATA_DIR", "/var/lib/myelin"),
        ("MYELIN_LOG", "debug,hyper=warn"),
        ("MYELIN_REGISTRATION__MODE", "token"),
        ("MYELIN_REGISTRATION__TOKENS", "one, two"),
        ("MYELIN_LIMITS__MAX_REQUEST_BYTES", "100"),
        ("MYELIN_ROOMS__DEFAULT_VERSION", "11"),
        ("MYELIN_DATABASE__PATH", "/tmp/other.db"),
        (
            "MYELIN_WELL_KNOWN__CLIENT_BASE_URL",
            "https://matrix.example.org",
        ),
        ("MYELIN_CONFIG", "/ignored.toml"),
        ("OTHER", "x"),
    ])
    .unwrap();
    assert_eq!(c.server_name, "example.org");
    assert_eq!(c.listen, "127.0.0.1:0");
    assert_eq!(c.data_dir, PathBuf::from("/var/lib/myelin"));
    assert_eq!(c.log, "debug,hyper=warn");
    assert_eq!(c.registration.mode, RegistrationMode::Token);
    assert_eq!(
        c.registration.tokens,
        vec!["one".to_owned(), "two".to_owned()]
    );
    assert_eq!(c.limits.max_request_bytes, 100);
    assert_eq!(c.rooms.default_version, "11");
    assert_eq!(c.database_path(), PathBuf::from("/tmp/other.db"));
    assert_eq!(
        c.well_known_client(),
        Some(serde_json::json!({"m.homeserver": {"base_url": "https://matrix.example.org"}}))
    );
    c.validate().unwrap();
    let sc = c.service_config();
    assert_eq!(sc.server_name.as_str(), "example.org");
    assert_eq!(sc.registration, RegistrationMode::Token);
    assert_eq!(sc.default_room_version, ruma::RoomVersionId::V11);
}

#[test]
fn env_toml_array_and_case() {
    let c = load_env(&[("MYELIN_REGISTRATION__TOKENS", r#"["a,b", "c"]"#)]).unwrap();
    assert_eq!(
        c.registration.tokens,
        vec!["a,b".to_owned(), "c".to_owned()]
    );
    let c = load_env(&[("MYELIN_Registration__Mode", "closed")]).unwrap();
    assert_eq!(c.registration.mode, RegistrationMode::Closed);
}

#[test]
fn env_overrides_file() {
    let dir = tempfile_dir();
    let path = dir.join("c.toml");
    std::fs::write(
        &path,
        "server_name = \"file.org\"\nlisten = \"0.0.0.0:1\"\n[limits]\nmax_sync_timeout_ms = 5\n",
    )
    .unwrap();
    let c = Config::load_with_env(Some(&path), env(&[("MYELIN_LISTEN", "127.0.0.1:2")])).unwrap();
    assert_eq!(c.server_name, "file.org");
    assert_eq!(c.listen, "127.0.0.1:2");
    assert_eq!(c.limits.max_sync_timeout_ms, 5);
    assert_eq!(
        c.limits.max_typing_timeout_ms,
        LimitsConfig::default().max_typing_timeout_ms
    );
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn env_errors() {
    let msg = |vars: &[(&str, &str)]| format!("{:#}", load_env(vars).unwrap_err());
    assert!(msg(&[("MYELIN_NOPE", "1")]).contains("MYELIN_NOPE"));
    assert!(msg(&[("MYELIN_LIMITS__NOPE", "1")]).contains("MYELIN_LIMITS__NOPE"));
    assert!(msg(&[("MYELIN_NOPE__X", "1")]).contains("[nope]"));
    assert!(msg(&[("MYELIN_LIMITS", "1")]).contains("section"));
    assert!(msg(&[("MYELIN_LIMITS__MAX_REQUEST_BYTES", "lots")]).contains("integer"));
    assert!(msg(&[("MYELIN_REGISTRATION__MODE", "sometimes")]).contains("sometimes"));
}

#[test]
fn file_errors() {
    let dir = tempfile_dir();
    let path = dir.join("c.toml");
    std::fs::write(&path, "sever_name = \"typo.org\"\n").unwrap();
    let e = format!(
        "{:#}",
        Config::load_with_env(Some(&path), env(&[])).unwrap_err()
    );
    assert!(e.contains("sever_name"), "{e}");
    std::fs::write(&path, "server_name = \n").unwrap();
    let e = format!(
        "{:#}",
        Config::load_with_env(Some(&path), env(&[])).unwrap_err()
    );
    assert!(e.contains("not valid TOML"), "{e}");
    let e = format!(
        "{:#}",
        Config::load_with_env(Some(&dir.join("missing.toml")), env(&[])).unwrap_err()
    );
    assert!(e.contains("cannot read"), "{e}");
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn validation_errors() {
    let check = |f: &dyn Fn(&mut Config), needle: &str| {
        let mut c = Config::default();
        f(&mut c);
        let e = c.validate().unwrap_err().to_string();
        assert!(e.contains(needle), "expected {needle:?} in {e:?}");
    };
    check(&|c| c.server_name = "not a name!".into(), "server_name");
    check(&|c| c.server_name = String::new(), "server_name");
    check(&|c| c.listen = "localhost:http".into(), "listen");
    check(
        &|c| c.rooms.default_version = "13".into(),
        "rooms.default_version",
    );
    check(
        &|c| c.database.backend = "postgres".into(),
        "needs database.url",
    );
    check(
        &|c| {
            c.database.backend = "postgres".into();
            c.database.url = Some("postgres://h/db?bogus=1".into());
        },
        "database.url",
    );
    check(
        &|c| c.database.url = Some("postgres://h/db".into()),
        "for backend",
    );
    check(&|c| c.database.pool_size = 0, "pool_size");
    check(&|c| c.database.backend = "mysql".into(), "unknown");
    check(
        &|c| c.registration.mode = RegistrationMode::Token,
        "at least one",
    );
    check(&|c| c.limits.max_request_bytes = 0, "max_request_bytes");
    check(
        &|c| c.well_known.client_base_url = Some("matrix.org".into()),
        "client_base_url",
    );
    check(&|c| c.log = "=[".into(), "log");

    let c = Config {
        server_name: "bad name".into(),
        listen: "nope".into(),
        ..Config::default()
    };
    let e = c.validate().unwrap_err().to_string();
    assert!(e.contains("server_name") && e.contains("listen"), "{e}");

    let mut c = Config {
        server_name: "example.org:8448".into(),
        listen: "[::]:8008".into(),
        ..Config::default()
    };
    c.rooms.default_version = "12".into();
    c.registration.mode = RegistrationMode::Token;
    c.registration.tokens = vec!["t".into()];
    c.validate().unwrap();
}

#[test]
fn tls_options() {
    let c = load_env(&[
        ("MYELIN_TLS__LISTEN", "0.0.0.0:8448"),
        ("MYELIN_TLS__SELF_SIGNED", "true"),
        ("MYELIN_REQUIRE_SYNAPSE", "1"),
    ])
    .unwrap();
    assert_eq!(c.tls.listen.as_deref(), Some("0.0.0.0:8448"));
    assert!(c.tls.self_signed);
    assert_eq!(c.tls.certificate, None);
    c.validate().unwrap();

    let c = load_env(&[
        ("MYELIN_TLS__LISTEN", "[::]:8448"),
        ("MYELIN_TLS__CERTIFICATE", "/etc/myelin/fullchain.pem"),
        ("MYELIN_TLS__PRIVATE_KEY", "/etc/myelin/privkey.pem"),
    ])
    .unwrap();
    assert_eq!(
        c.tls.certificate,
        Some(PathBuf::from("/etc/myelin/fullchain.pem"))
    );
    assert_eq!(
        c.tls.private_key,
        Some(PathBuf::from("/etc/myelin/privkey.pem"))
    );
    c.validate().unwrap();

    let c =
        Config::from_toml_str("[tls]\nlisten = \"127.0.0.1:8448\"\nself_signed = true\n").unwrap();
    c.validate().unwrap();
    assert_eq!(
        Config::from_toml_str(&c.to_toml_string().unwrap()).unwrap(),
        c
    );
    // A certificate without a listener is fine: the caller may bring its own listener.
    let mut c = Config::default();
    c.tls.self_signed = true;
    c.validate().unwrap();
}

#[test]
fn http_options() {
    let c = load_env(&[
        (
            "MYELIN_HTTP__TRUSTED_PROXIES",
            "127.0.0.1, 10.0.0.0/8, fd00::/8",
        ),
        ("MYELIN_HTTP__HEADER_READ_TIMEOUT_MS", "2000"),
        ("MYELIN_HTTP__MAX_CONNECTIONS", "10"),
    ])
    .unwrap();
    c.validate().unwrap();
    assert_eq!(
        c.http.trusted_proxies,
        vec!["127.0.0.1", "10.0.0.0/8", "fd00::/8"]
    );
    assert_eq!(c.http.header_read_timeout_ms, 2000);
    assert_eq!(c.http.max_connections, 10);
    assert_eq!(
        c.http.connection_limits().idle_timeout,
        std::time::Duration::from_secs(75)
    );

    let check = |f: &dyn Fn(&mut HttpConfig), needle: &str| {
        let mut c = Config::default();
        f(&mut c.http);
        let e = c.validate().unwrap_err().to_string();
        assert!(e.contains(needle), "expected {needle:?} in {e:?}");
    };
    check(
        &|h| h.trusted_proxies = vec!["proxy.local".into()],
        "http.trusted_proxies",
    );
    check(
        &|h| h.header_read_timeout_ms = 0,
        "http.header_read_timeout_ms",
    );
    check(
        &|h| h.request_body_timeout_ms = 0,
        "http.request_body_timeout_ms",
    );
    check(&|h| h.idle_timeout_ms = 0, "http.idle_timeout_ms");
    check(&|h| h.max_connections = 0, "http.max_connections");
}

#[test]
fn tls_validation_errors() {
    let check = |f: &dyn Fn(&mut TlsConfig), needle: &str| {
        let mut c = Config::default();
        f(&mut c.tls);
        let e = c.validate().unwrap_err().to_string();
        assert!(e.contains(needle), "expected {needle:?} in {e:?}");
    };
    check(
        &|t| t.listen = Some("0.0.0.0:8448".into()),
        "tls.listen is set but there is no certificate",
    );
    check(
        &|t| {
            t.listen = Some("8448".into());
            t.self_signed = true;
        },
        "tls.listen \"8448\" is not an `IP:port`",
    );
    check(
        &|t| {
            t.listen = Some("127.0.0.1:8008".into());
            t.self_signed = true;
        },
        "same address as listen",
    );
    check(
        &|t| t.certificate = Some("/c.pem".into()),
        "tls.certificate is set without tls.private_key",
    );
    check(
        &|t| {
            t.private_key = Some("/k.pem".into());
            t.self_signed = true;
        },
        "tls.private_key is set without tls.certificate",
    );
    check(
        &|t| {
            t.certificate = Some("".into());
            t.private_key = Some("/k.pem".into());
        },
        "tls.certificate must not be empty",
    );
}

fn tempfile_dir() -> PathBuf {
    use rand::Rng;
    let n: u64 = rand::thread_rng().gen();
    let dir = std::env::temp_dir().join(format!("myelin-config-test-{n:x}"));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

#[test]
fn postgres_database_options() {
    let c = load_env(&[
        ("MYELIN_DATABASE__BACKEND", "postgres"),
        (
            "MYELIN_DATABASE__URL",
            "postgres://myelin:pw@db.internal:5433/myelin",
        ),
        ("MYELIN_DATABASE__POOL_SIZE", "32"),
    ])
    .unwrap();
    c.validate().unwrap();
    assert!(c.database.is_postgres());
    assert_eq!(c.database.pool_size, 32);
    assert_eq!(
        c.database.postgres_url().unwrap(),
        "postgres://myelin:pw@db.internal:5433/myelin"
    );

    let dir = tempfile_dir();
    let secret = dir.join("db-url");
    std::fs::write(&secret, "postgres://u:pw@h/db\n").unwrap();
    let mut c = Config::default();
    c.database.backend = "postgres".into();
    c.database.url_file = Some(secret.clone());
    c.validate().unwrap();
    assert_eq!(c.database.postgres_url().unwrap(), "postgres://u:pw@h/db");
    c.database.url = Some("postgres://h/db".into());
    assert!(c.validate().unwrap_err().to_string().contains("only one"));
    c.database.url = None;
    c.database.url_file = Some(dir.join("missing"));
    assert!(format!("{:#}", c.database.postgres_url().unwrap_err()).contains("cannot read"));
    let _ = std::fs::remove_dir_all(dir);
}
