//! `MYELIN_*` environment variables laid over the TOML table before it becomes a [`Config`]:
//! each names a key by its path (sections separated by `__`), typed after the option's default.

use anyhow::{bail, Context};

use super::{Config, ENV_PREFIX};

/// Environment variables with [`ENV_PREFIX`] that are not configuration keys: the config path,
/// and the test suite's own switches (README), which a developer's shell may well export.
const ENV_NOT_KEYS: &[&str] = &[
    "MYELIN_CONFIG",
    "MYELIN_TEST_POSTGRES_URL",
    "MYELIN_TEST_BACKEND",
    "MYELIN_REQUIRE_POSTGRES",
    "MYELIN_REQUIRE_SYNAPSE",
];

/// Overlays the `MYELIN_*` variables of `env` onto `table`.
///
/// The type of each value follows the option's default: strings are taken verbatim, numbers and
/// booleans are parsed, lists are a TOML array or comma-separated. Unknown keys are an error.
pub(super) fn apply_env(
    table: &mut toml::Table,
    env: impl IntoIterator<Item = (String, String)>,
) -> anyhow::Result<()> {
    let defaults = match toml::Value::try_from(Config::default()).context("serialize defaults")? {
        toml::Value::Table(t) => t,
        _ => unreachable!("a struct serializes to a table"),
    };
    let mut vars: Vec<(String, String)> = env
        .into_iter()
        .filter(|(k, _)| k.starts_with(ENV_PREFIX) && !ENV_NOT_KEYS.contains(&k.as_str()))
        .collect();
    vars.sort();
    for (var, raw) in vars {
        let path: Vec<String> = var[ENV_PREFIX.len()..]
            .split("__")
            .map(|s| s.to_ascii_lowercase())
            .collect();
        let (section, key) = match path.as_slice() {
            [key] if !key.is_empty() => (None, key.as_str()),
            [section, key] if !section.is_empty() && !key.is_empty() => {
                (Some(section.as_str()), key.as_str())
            }
            _ => bail!("environment variable {var} does not name a configuration option"),
        };
        let default_section = match section {
            None => &defaults,
            Some(s) => match defaults.get(s) {
                Some(toml::Value::Table(t)) => t,
                _ => bail!("environment variable {var}: there is no configuration section [{s}]"),
            },
        };
        let known = default_section.get(key);
        if matches!(known, Some(toml::Value::Table(_))) {
            bail!(
                "environment variable {var} names the section [{key}]; set its keys as MYELIN_{}__<KEY>",
                key.to_ascii_uppercase()
            );
        }
        if known.is_none() && !OPTIONAL_KEYS.contains(&(section.unwrap_or(""), key)) {
            bail!("environment variable {var} does not name a configuration option");
        }
        let target = match section {
            None => &mut *table,
            Some(s) => {
                let entry = table
                    .entry(s.to_owned())
                    .or_insert_with(|| toml::Value::Table(toml::Table::new()));
                match entry {
                    toml::Value::Table(t) => t,
                    _ => bail!("configuration key {s} must be a section, not a value"),
                }
            }
        };
        match known {
            // An optional option (no default): a string; empty means unset.
            None => {
                if raw.is_empty() {
                    target.remove(key);
                } else {
                    target.insert(key.to_owned(), toml::Value::String(raw));
                }
            }
            Some(default) => {
                let value = env_value(default, &raw)
                    .with_context(|| format!("environment variable {var}={raw:?}"))?;
                target.insert(key.to_owned(), value);
            }
        }
    }
    Ok(())
}

/// Options without a default value (absent from the serialized defaults): `(section, key)`.
const OPTIONAL_KEYS: &[(&str, &str)] = &[
    ("database", "path"),
    ("database", "url"),
    ("database", "url_file"),
    ("well_known", "client_base_url"),
    ("well_known", "support_page"),
    ("federation", "well_known_server"),
    ("turn", "shared_secret"),
    ("tls", "listen"),
    ("tls", "certificate"),
    ("tls", "private_key"),
    ("media", "path"),
    ("smtp", "host"),
    ("smtp", "username"),
    ("smtp", "password"),
    ("sso", "public_baseurl"),
];

/// Parses an environment value into the TOML type of the option's default.
fn env_value(default: &toml::Value, raw: &str) -> anyhow::Result<toml::Value> {
    let parsed = parse_toml_value(raw.trim());
    Ok(match default {
        toml::Value::String(_) => toml::Value::String(raw.to_owned()),
        toml::Value::Integer(_) => match parsed {
            Some(v @ toml::Value::Integer(_)) => v,
            _ => bail!("expected an integer"),
        },
        toml::Value::Float(_) => match parsed {
            Some(v @ (toml::Value::Float(_) | toml::Value::Integer(_))) => v,
            _ => bail!("expected a number"),
        },
        toml::Value::Boolean(_) => match parsed {
            Some(v @ toml::Value::Boolean(_)) => v,
            _ => bail!("expected true or false"),
        },
        toml::Value::Array(_) => match parsed {
            Some(v @ toml::Value::Array(_)) => v,
            _ => toml::Value::Array(
                raw.split(',')
                    .map(str::trim)
                    .filter(|s| !s.is_empty())
                    .map(|s| toml::Value::String(s.to_owned()))
                    .collect(),
            ),
        },
        _ => parsed.unwrap_or_else(|| toml::Value::String(raw.to_owned())),
    })
}

/// `raw` as a TOML value, if it is one.
fn parse_toml_value(raw: &str) -> Option<toml::Value> {
    let mut doc = toml::from_str::<toml::Table>(&format!("v = {raw}")).ok()?;
    if doc.len() != 1 {
        return None;
    }
    doc.remove("v")
}
