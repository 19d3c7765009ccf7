//! Reading a page's OpenGraph properties (`og:title`, `og:description`, `og:image`…) with an
//! HTML5 parser (`scraper`, on html5ever), with the usual fallbacks: the `<title>` for the title,
//! `<meta name="description">` for the description. Pure: no IO.

use std::collections::BTreeMap;

use scraper::{Html, Selector};

/// The most properties kept from one page.
const MAX_PROPERTIES: usize = 64;

/// The longest property name kept.
const MAX_NAME_BYTES: usize = 64;

/// The longest value kept, in characters (longer ones are cut, as descriptions often are).
const MAX_VALUE_CHARS: usize = 500;

/// The page's OpenGraph properties, by name, each its first value on the page.
pub fn parse(html: &str) -> BTreeMap<String, String> {
    let document = Html::parse_document(html);
    let mut properties = BTreeMap::new();
    if let Ok(meta) = Selector::parse("meta[property], meta[name]") {
        for element in document.select(&meta) {
            let element = element.value();
            let name = element
                .attr("property")
                .or_else(|| element.attr("name"))
                .unwrap_or_default()
                .trim()
                .to_ascii_lowercase();
            let Some(content) = element.attr("content") else {
                continue;
            };
            let plausible = name.starts_with("og:") && name.len() <= MAX_NAME_BYTES;
            if !plausible || properties.len() >= MAX_PROPERTIES {
                continue;
            }
            properties.entry(name).or_insert_with(|| clean(content));
        }
    }
    if !properties.contains_key("og:title") {
        if let Some(title) = first_text(&document, "title") {
            properties.insert("og:title".to_owned(), title);
        }
    }
    if !properties.contains_key("og:description") {
        if let Some(description) = meta_content(&document, "meta[name=\"description\" i]") {
            properties.insert("og:description".to_owned(), description);
        }
    }
    properties.retain(|_, value| !value.is_empty());
    properties
}

fn first_text(document: &Html, selector: &str) -> Option<String> {
    let selector = Selector::parse(selector).ok()?;
    let element = document.select(&selector).next()?;
    Some(clean(&element.text().collect::<String>()))
}

fn meta_content(document: &Html, selector: &str) -> Option<String> {
    let selector = Selector::parse(selector).ok()?;
    let element = document.select(&selector).next()?;
    element.value().attr("content").map(clean)
}

/// Whitespace collapsed, cut to [`MAX_VALUE_CHARS`] characters.
fn clean(value: &str) -> String {
    let collapsed = value.split_whitespace().collect::<Vec<_>>().join(" ");
    match collapsed.char_indices().nth(MAX_VALUE_CHARS) {
        Some((cut, _)) => format!("{}…", &collapsed[..cut]),
        None => collapsed,
    }
}
