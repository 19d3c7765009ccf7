//! The few HTML pages of the login dance: the provider picker, the confirmation before a login
//! token goes to a client not on `client_whitelist`, and errors. Every value is escaped.

use super::config::OidcProviderConfig;

/// `text` safe inside HTML text and double-quoted attributes.
pub(crate) fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

fn page(title: &str, body: &str) -> String {
    format!(
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
         <title>{}</title></head>\n<body>\n<h1>{}</h1>\n{body}\n</body></html>\n",
        escape(title),
        escape(title)
    )
}

/// The picker shown when several providers are configured and the client named none: one link
/// per provider to `/login/sso/redirect/{idpId}` with the client's `redirectUrl`.
pub(crate) fn picker(providers: &[OidcProviderConfig], redirect_url: &str) -> String {
    let mut query = reqwest::Url::parse("x:/").ok();
    if let Some(u) = query.as_mut() {
        u.query_pairs_mut().append_pair("redirectUrl", redirect_url);
    }
    let query = query
        .and_then(|u| u.query().map(str::to_owned))
        .unwrap_or_default();
    let items: String = providers
        .iter()
        .map(|p| {
            format!(
                "<li><a href=\"/_matrix/client/v3/login/sso/redirect/{}?{}\">{}</a></li>\n",
                escape(&p.idp_id),
                escape(&query),
                escape(&p.idp_name)
            )
        })
        .collect();
    page("Choose how to sign in", &format!("<ul>\n{items}</ul>"))
}

/// The confirmation before the login token goes to `target` (the client's `redirectUrl` with
/// `loginToken`), naming where it goes.
pub(crate) fn confirm(target: &str, user_id: &str) -> String {
    let host = reqwest::Url::parse(target)
        .ok()
        .and_then(|u| u.host_str().map(str::to_owned))
        .unwrap_or_else(|| target.split('?').next().unwrap_or_default().to_owned());
    page(
        "Continue to your client",
        &format!(
            "<p>You are signing in as <strong>{}</strong> to an application at <strong>{}</strong>. \
             Continue only if you started this sign-in there.</p>\n\
             <p><a id=\"continue\" href=\"{}\">Continue</a></p>",
            escape(user_id),
            escape(&host),
            escape(target)
        ),
    )
}

/// An error page: the login did not happen.
pub(crate) fn error(message: &str) -> String {
    page(
        "Sign-in failed",
        &format!(
            "<p>{}</p>\n<p>Go back to your application and try again.</p>",
            escape(message)
        ),
    )
}
