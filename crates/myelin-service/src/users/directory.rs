//! The user directory: finding people to invite among the users the searcher shares a room with.
//!
//! Like Synapse's default (`search_all_users = false`), only users visible through a joined room
//! are found; names come from their member events, which track their profiles.

use crate::rooms::Membership;
use std::collections::BTreeMap;

use ruma::{OwnedUserId, UserId};
use serde_json::{json, Value};

use crate::{ServiceResult, Users};

/// The most results a client may ask for at once.
pub const MAX_LIMIT: usize = 50;

/// One directory entry.
#[derive(Debug, Clone, PartialEq)]
pub struct DirectoryUser {
    pub user_id: OwnedUserId,
    pub display_name: Option<String>,
    pub avatar_url: Option<String>,
}

impl DirectoryUser {
    pub fn to_json(&self) -> Value {
        let mut v = json!({ "user_id": self.user_id });
        if let Some(name) = &self.display_name {
            v["display_name"] = json!(name);
        }
        if let Some(url) = &self.avatar_url {
            v["avatar_url"] = json!(url);
        }
        v
    }

    /// Whether every word of the search term starts a word of the user ID or display name.
    fn matches(&self, words: &[String]) -> bool {
        let mut haystack: Vec<String> = split_words(self.user_id.as_str());
        if let Some(name) = &self.display_name {
            haystack.extend(split_words(name));
        }
        words
            .iter()
            .all(|w| haystack.iter().any(|h| h.starts_with(w.as_str())))
    }
}

/// Lower-cased words, split on anything that is not a letter or digit (so `@alice:example.org`
/// gives `alice`, `example`, `org`).
fn split_words(text: &str) -> Vec<String> {
    text.split(|c: char| !c.is_alphanumeric())
        .filter(|w| !w.is_empty())
        .map(str::to_lowercase)
        .collect()
}

impl Users {
    /// `POST /user_directory/search`: up to `limit` matches, and whether there were more.
    pub async fn search_users(
        &self,
        searcher: &UserId,
        term: &str,
        limit: usize,
    ) -> ServiceResult<(Vec<DirectoryUser>, bool)> {
        let words = split_words(term);
        if words.is_empty() {
            return Ok((Vec::new(), false));
        }
        // Keyed by user ID so each user appears once, in a stable order.
        let mut found: BTreeMap<OwnedUserId, DirectoryUser> = BTreeMap::new();
        for room_id in self.rooms.joined_rooms(searcher).await? {
            let state = self.rooms.room_state(&room_id).await?;
            for (user_id, entry) in state.member_entries() {
                if found.contains_key(user_id) || entry.membership() != Some(Membership::Join) {
                    continue;
                }
                let content = entry.pdu.content_value();
                let text = |field: &str| {
                    content
                        .get(field)
                        .and_then(Value::as_str)
                        .map(str::to_owned)
                };
                let user = DirectoryUser {
                    display_name: text("displayname"),
                    avatar_url: text("avatar_url"),
                    user_id: user_id.to_owned(),
                };
                if user.matches(&words) {
                    found.insert(user_id.to_owned(), user);
                }
            }
        }
        let limit = limit.min(MAX_LIMIT);
        let limited = found.len() > limit;
        Ok((found.into_values().take(limit).collect(), limited))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn user(id: &str, name: Option<&str>) -> DirectoryUser {
        DirectoryUser {
            user_id: id.try_into().unwrap(),
            display_name: name.map(str::to_owned),
            avatar_url: None,
        }
    }

    #[test]
    fn every_word_must_prefix_a_word() {
        let alice = user("@alice:example.org", Some("Alice Liddell"));
        assert!(alice.matches(&split_words("ali")));
        assert!(alice.matches(&split_words("lidd ALI")));
        assert!(alice.matches(&split_words("example")));
        assert!(!alice.matches(&split_words("lice")));
        assert!(!alice.matches(&split_words("alice bob")));
        assert!(user("@bob:x", None).matches(&split_words("@bob")));
    }
}
