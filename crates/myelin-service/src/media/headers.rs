//! How a media file is served so that a browser opening it cannot be made to run it: the
//! `Content-Type` given at upload (when it is a well-formed MIME type), `inline` only for types
//! a browser shows without running anything, `attachment` for everything else (HTML, SVG,
//! scripts…), and the security headers every media response carries.

/// Types shown inline: images, audio, video and plain text that no browser executes (as
/// Synapse's list; SVG is not there, since it can carry scripts).
const INLINE_TYPES: &[&str] = &[
    "text/css",
    "text/plain",
    "text/csv",
    "application/json",
    "application/ld+json",
    "image/jpeg",
    "image/gif",
    "image/png",
    "image/apng",
    "image/webp",
    "image/avif",
    "video/mp4",
    "video/webm",
    "video/ogg",
    "video/quicktime",
    "audio/mp4",
    "audio/webm",
    "audio/aac",
    "audio/mpeg",
    "audio/ogg",
    "audio/wave",
    "audio/wav",
    "audio/x-wav",
    "audio/x-pn-wav",
    "audio/flac",
    "audio/x-flac",
];

/// Served with every media response (spec: Client-Server API, "Content repository",
/// "Security considerations").
pub const CONTENT_SECURITY_POLICY: &str = "sandbox; default-src 'none'; script-src 'none'; \
     plugin-types application/pdf; style-src 'unsafe-inline'; media-src 'self'; object-src 'self';";

/// The type of a file without one, or with one that is not a well-formed MIME type.
pub const OCTET_STREAM: &str = "application/octet-stream";

/// The longest `Content-Type` accepted from an upload.
const MAX_CONTENT_TYPE_BYTES: usize = 255;

/// The upload's `Content-Type` if it is a plausible MIME type (`type/subtype` and parameters of
/// visible ASCII), else `None`: it is echoed in a response header later.
pub fn sanitize_content_type(raw: Option<&str>) -> Option<String> {
    let raw = raw?.trim();
    let (essence, _) = raw.split_once(';').unwrap_or((raw, ""));
    let (kind, sub) = essence.trim().split_once('/')?;
    let token = |s: &str| {
        !s.is_empty()
            && s.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"!#$&-^_.+".contains(&b))
    };
    let visible = raw.bytes().all(|b| (0x20..0x7f).contains(&b));
    (token(kind) && token(sub) && visible && raw.len() <= MAX_CONTENT_TYPE_BYTES)
        .then(|| raw.to_owned())
}

/// Whether a file of this type may be shown inline.
pub fn is_inline_safe(content_type: &str) -> bool {
    let essence = content_type
        .split(';')
        .next()
        .unwrap_or_default()
        .trim()
        .to_ascii_lowercase();
    INLINE_TYPES.contains(&essence.as_str())
}

/// The `Content-Disposition` of a file: `inline` for safe types, `attachment` otherwise, with
/// the file name (RFC 6266: quoted when plain ASCII, else `filename*=utf-8''…`).
pub fn content_disposition(content_type: &str, filename: Option<&str>) -> String {
    let kind = if is_inline_safe(content_type) {
        "inline"
    } else {
        "attachment"
    };
    match filename.filter(|name| !name.is_empty()) {
        None => kind.to_owned(),
        Some(name) if is_plain_ascii(name) => format!("{kind}; filename=\"{name}\""),
        Some(name) => format!("{kind}; filename*=utf-8''{}", percent_encode(name)),
    }
}

/// Printable ASCII that needs no escaping inside a quoted string.
fn is_plain_ascii(name: &str) -> bool {
    name.bytes()
        .all(|b| (0x20..0x7f).contains(&b) && b != b'"' && b != b'\\')
}

/// RFC 5987 `value-chars`: attr-chars as they are, every other byte as `%XX`.
fn percent_encode(name: &str) -> String {
    let mut out = String::with_capacity(name.len() * 3);
    for b in name.bytes() {
        if b.is_ascii_alphanumeric() || b"!#$&+-.^_`|~".contains(&b) {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}
