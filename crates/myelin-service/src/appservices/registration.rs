//! Application-service registration files (spec: Application Service API, "Registration"):
//! the YAML documents bridges write, parsed and checked once, then compiled into
//! [`Appservice`]s with their namespaces as regular expressions. The set of registrations is the
//! [`Registry`], held by the context so that authentication and the exclusivity checks of
//! registration and aliases can ask it; it is replaced whole on reload.

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};

use regex::Regex;
use ruma::{OwnedUserId, RoomAliasId, RoomId, ServerName, UserId};
use serde::Deserialize;
use sha2::{Digest, Sha256};

/// Largest registration file read (they are a few hundred bytes).
const MAX_FILE_BYTES: u64 = 1024 * 1024;
/// Largest compiled namespace regex (bounds memory; the regex crate matches in linear time).
const MAX_REGEX_BYTES: usize = 1024 * 1024;

/// A registration file as bridges write it. Unknown keys are ignored.
#[derive(Debug, Deserialize)]
struct RawRegistration {
    id: String,
    url: Option<String>,
    as_token: String,
    hs_token: String,
    sender_localpart: String,
    #[serde(default)]
    namespaces: Option<RawNamespaces>,
    #[serde(default)]
    rate_limited: Option<bool>,
    #[serde(default)]
    protocols: Option<Vec<String>>,
    #[serde(default)]
    receive_ephemeral: Option<bool>,
    #[serde(default, rename = "de.sorunome.msc2409.push_ephemeral")]
    push_ephemeral: Option<bool>,
    #[serde(default, rename = "org.matrix.msc3202")]
    msc3202: Option<bool>,
    #[serde(default, rename = "io.element.msc4190")]
    msc4190: Option<bool>,
}

#[derive(Debug, Default, Deserialize)]
struct RawNamespaces {
    #[serde(default)]
    users: Option<Vec<RawNamespace>>,
    #[serde(default)]
    aliases: Option<Vec<RawNamespace>>,
    #[serde(default)]
    rooms: Option<Vec<RawNamespace>>,
}

#[derive(Debug, Deserialize)]
struct RawNamespace {
    regex: String,
    #[serde(default)]
    exclusive: bool,
}

/// One namespace: IDs matching `regex` (anchored at the start, as Synapse does) belong to the
/// appservice, exclusively or not.
#[derive(Debug, Clone)]
pub struct Namespace {
    pub regex: Regex,
    pub exclusive: bool,
}

impl Namespace {
    fn matches(&self, id: &str) -> bool {
        self.regex.is_match(id)
    }
}

/// A secret that never shows in logs.
#[derive(Clone)]
pub struct Secret(String);

impl Secret {
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("<secret>")
    }
}

/// A checked registration.
#[derive(Debug, Clone)]
pub struct Appservice {
    pub id: String,
    /// Where transactions and queries go; `None` for an appservice that only uses the client API.
    pub url: Option<reqwest::Url>,
    pub as_token: Secret,
    pub hs_token: Secret,
    /// The appservice's own user (`sender_localpart` on this server).
    pub sender: OwnedUserId,
    pub users: Vec<Namespace>,
    pub aliases: Vec<Namespace>,
    pub rooms: Vec<Namespace>,
    /// Whether client rate limits apply to it (default true).
    pub rate_limited: bool,
    pub protocols: Vec<String>,
    /// MSC2409: typing, receipts, presence and to-device messages in transactions.
    pub receive_ephemeral: bool,
    /// MSC3202: device masquerading and device-list / key-count fields in transactions.
    pub msc3202: bool,
    /// MSC4190: device management through `/devices`.
    pub msc4190: bool,
}

impl Appservice {
    /// Whether the user is the appservice's sender or in its user namespace.
    pub fn is_user_in_namespace(&self, user_id: &UserId) -> bool {
        user_id == self.sender || self.users.iter().any(|n| n.matches(user_id.as_str()))
    }

    /// Whether the user is in an exclusive user namespace of this appservice.
    pub fn is_exclusive_user(&self, user_id: &UserId) -> bool {
        user_id == self.sender
            || self
                .users
                .iter()
                .any(|n| n.exclusive && n.matches(user_id.as_str()))
    }

    pub fn is_alias_in_namespace(&self, alias: &RoomAliasId) -> bool {
        self.aliases.iter().any(|n| n.matches(alias.as_str()))
    }

    pub fn is_exclusive_alias(&self, alias: &RoomAliasId) -> bool {
        self.aliases
            .iter()
            .any(|n| n.exclusive && n.matches(alias.as_str()))
    }

    pub fn is_room_in_namespace(&self, room_id: &RoomId) -> bool {
        self.rooms.iter().any(|n| n.matches(room_id.as_str()))
    }
}

/// The SHA-256 of a token: registrations are looked up by the hash of the presented token, never
/// by comparing secrets.
fn token_key(token: &str) -> [u8; 32] {
    Sha256::digest(token.as_bytes()).into()
}

/// The registrations in force, with an index by `as_token`.
#[derive(Debug, Default)]
pub struct Registrations {
    pub list: Vec<Arc<Appservice>>,
    by_token: HashMap<[u8; 32], usize>,
}

impl Registrations {
    pub fn new(list: Vec<Appservice>) -> Registrations {
        let list: Vec<Arc<Appservice>> = list.into_iter().map(Arc::new).collect();
        let by_token = list
            .iter()
            .enumerate()
            .map(|(i, a)| (token_key(a.as_token.expose()), i))
            .collect();
        Registrations { list, by_token }
    }
}

/// The registrations in force, replaced whole by a reload.
#[derive(Debug, Default)]
pub struct Registry {
    current: RwLock<Arc<Registrations>>,
    /// Ephemeral events and key changes waiting for each appservice's next transaction.
    pub(super) buffers: super::buffer::Buffers,
}

impl Registry {
    pub fn new(list: Vec<Appservice>) -> Registry {
        Registry {
            current: RwLock::new(Arc::new(Registrations::new(list))),
            buffers: Default::default(),
        }
    }

    /// The registrations now.
    pub fn all(&self) -> Arc<Registrations> {
        match self.current.read() {
            Ok(guard) => guard.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }

    /// Replaces every registration (a reload).
    pub fn replace(&self, list: Vec<Appservice>) {
        let new = Arc::new(Registrations::new(list));
        match self.current.write() {
            Ok(mut guard) => *guard = new,
            Err(poisoned) => *poisoned.into_inner() = new,
        }
    }

    pub fn is_empty(&self) -> bool {
        self.all().list.is_empty()
    }

    /// The appservice whose `as_token` this is.
    pub fn by_as_token(&self, token: &str) -> Option<Arc<Appservice>> {
        let all = self.all();
        let index = *all.by_token.get(&token_key(token))?;
        all.list.get(index).cloned()
    }

    pub fn by_id(&self, id: &str) -> Option<Arc<Appservice>> {
        self.all().list.iter().find(|a| a.id == id).cloned()
    }

    /// The appservice that owns this user exclusively, if any.
    pub fn exclusive_user_owner(&self, user_id: &UserId) -> Option<Arc<Appservice>> {
        self.all()
            .list
            .iter()
            .find(|a| a.is_exclusive_user(user_id))
            .cloned()
    }

    /// The appservice that owns this alias exclusively, if any.
    pub fn exclusive_alias_owner(&self, alias: &RoomAliasId) -> Option<Arc<Appservice>> {
        self.all()
            .list
            .iter()
            .find(|a| a.is_exclusive_alias(alias))
            .cloned()
    }
}

/// Reads, parses and checks registration files; every problem of every file is reported at once.
pub fn load_files(paths: &[PathBuf], server_name: &ServerName) -> Result<Vec<Appservice>, String> {
    let mut problems = Vec::new();
    let mut parsed = Vec::new();
    for path in paths {
        match read_file(path).and_then(|text| parse(&text, server_name)) {
            Ok(appservice) => parsed.push((path.display().to_string(), appservice)),
            Err(e) => problems.push(format!("{}: {e}", path.display())),
        }
    }
    problems.extend(conflicts(&parsed));
    if problems.is_empty() {
        Ok(parsed.into_iter().map(|(_, a)| a).collect())
    } else {
        Err(problems.join("\n  - "))
    }
}

fn read_file(path: &Path) -> Result<String, String> {
    let meta = std::fs::metadata(path).map_err(|e| format!("cannot read: {e}"))?;
    if meta.len() > MAX_FILE_BYTES {
        return Err(format!("larger than {MAX_FILE_BYTES} bytes"));
    }
    std::fs::read_to_string(path).map_err(|e| format!("cannot read: {e}"))
}

/// Parses and checks one registration document.
pub fn parse(text: &str, server_name: &ServerName) -> Result<Appservice, String> {
    let raw: RawRegistration =
        serde_yaml_ng::from_str(text).map_err(|e| format!("not a valid registration: {e}"))?;
    if raw.id.trim().is_empty() {
        return Err("id must not be empty".into());
    }
    if raw.as_token.is_empty() || raw.hs_token.is_empty() {
        return Err("as_token and hs_token must not be empty".into());
    }
    if raw.as_token == raw.hs_token {
        return Err("as_token and hs_token must differ".into());
    }
    let url = match raw.url.as_deref().filter(|u| !u.is_empty()) {
        None => None,
        Some(u) => Some(parse_url(u)?),
    };
    let sender = OwnedUserId::try_from(format!("@{}:{server_name}", raw.sender_localpart))
        .map_err(|e| {
            format!(
                "sender_localpart {:?} is invalid: {e}",
                raw.sender_localpart
            )
        })?;
    let namespaces = raw.namespaces.unwrap_or_default();
    Ok(Appservice {
        id: raw.id,
        url,
        as_token: Secret(raw.as_token),
        hs_token: Secret(raw.hs_token),
        sender,
        users: compile("users", namespaces.users)?,
        aliases: compile("aliases", namespaces.aliases)?,
        rooms: compile("rooms", namespaces.rooms)?,
        rate_limited: raw.rate_limited.unwrap_or(true),
        protocols: raw.protocols.unwrap_or_default(),
        receive_ephemeral: raw.receive_ephemeral.unwrap_or(false)
            || raw.push_ephemeral.unwrap_or(false),
        msc3202: raw.msc3202.unwrap_or(false),
        msc4190: raw.msc4190.unwrap_or(false),
    })
}

fn parse_url(url: &str) -> Result<reqwest::Url, String> {
    let parsed = reqwest::Url::parse(url).map_err(|e| format!("url {url:?} is invalid: {e}"))?;
    if !matches!(parsed.scheme(), "http" | "https") || parsed.host_str().is_none() {
        return Err(format!("url {url:?} must be an http:// or https:// URL"));
    }
    Ok(parsed)
}

fn compile(kind: &str, raw: Option<Vec<RawNamespace>>) -> Result<Vec<Namespace>, String> {
    raw.unwrap_or_default()
        .into_iter()
        .map(|ns| {
            // Anchored at the start only, as Synapse matches; bridges write `^...$` anyway.
            let regex = regex::RegexBuilder::new(&format!("^(?:{})", ns.regex))
                .size_limit(MAX_REGEX_BYTES)
                .build()
                .map_err(|e| format!("namespaces.{kind} regex {:?} is invalid: {e}", ns.regex))?;
            Ok(Namespace {
                regex,
                exclusive: ns.exclusive,
            })
        })
        .collect()
}

/// Problems between registrations: duplicate IDs and tokens, and exclusive namespaces that
/// overlap where that can be seen (the same regex, or one appservice's sender inside another's
/// exclusive user namespace).
fn conflicts(all: &[(String, Appservice)]) -> Vec<String> {
    let mut problems = Vec::new();
    let mut ids = HashSet::new();
    let mut tokens = HashSet::new();
    for (file, a) in all {
        if !ids.insert(a.id.as_str()) {
            problems.push(format!(
                "{file}: id {:?} is used by another registration",
                a.id
            ));
        }
        for token in [a.as_token.expose(), a.hs_token.expose()] {
            if !tokens.insert(token_key(token)) {
                problems.push(format!(
                    "{file}: a token of {:?} is used by another registration",
                    a.id
                ));
            }
        }
    }
    for (i, (file, a)) in all.iter().enumerate() {
        for (_, b) in all.iter().skip(i + 1) {
            if let Some(why) = overlap(a, b) {
                problems.push(format!(
                    "{file}: exclusive namespaces of {:?} and {:?} overlap: {why}",
                    a.id, b.id
                ));
            }
        }
    }
    problems
}

fn overlap(a: &Appservice, b: &Appservice) -> Option<String> {
    if a.sender == b.sender {
        return Some(format!("both use the sender {}", a.sender));
    }
    if b.is_exclusive_user(&a.sender) {
        return Some(format!("{} is in both", a.sender));
    }
    if a.is_exclusive_user(&b.sender) {
        return Some(format!("{} is in both", b.sender));
    }
    let same = |x: &[Namespace], y: &[Namespace]| {
        x.iter().filter(|n| n.exclusive).find_map(|n| {
            y.iter()
                .any(|m| m.exclusive && m.regex.as_str() == n.regex.as_str())
                .then(|| n.regex.as_str().to_owned())
        })
    };
    same(&a.users, &b.users)
        .or_else(|| same(&a.aliases, &b.aliases))
        .or_else(|| same(&a.rooms, &b.rooms))
        .map(|r| format!("both claim {r}"))
}
