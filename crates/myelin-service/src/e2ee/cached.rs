//! `POST /keys/query` answered from the cache of remote device lists: users sharing a room with
//! the requester whose cached list is trusted are answered without asking their server; those
//! sharing a room without a trusted list get it fetched whole (and cached) first. What is left
//! is asked of the servers with `/user/keys/query`, as for users we do not track.

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use futures_util::future::join_all;
use myelin_core::StreamPos;
use myelin_storage::RemoteDeviceList;
use ruma::{OwnedDeviceId, OwnedServerName, OwnedUserId, UserId};
use serde_json::Value;

use super::remote_cache::{cached_answer, fetch_device_list};
use crate::rooms::Membership;
use crate::{E2ee, ServiceResult};

/// Remote users queried per server, by user.
type Wanted = BTreeMap<OwnedServerName, BTreeMap<OwnedUserId, Vec<OwnedDeviceId>>>;

/// The most device lists one query fetches whole; the other users are asked for their keys.
const MAX_FETCHES_PER_QUERY: usize = 32;

impl E2ee {
    /// Answers the users of `wanted` it can from the cache (fetching the lists of tracked users
    /// not cached yet, within `timeout`) into `answer`; returns the users still to ask.
    pub(super) async fn answer_from_cache(
        &self,
        requester: &UserId,
        mut wanted: Wanted,
        answer: &mut Value,
        timeout: Duration,
    ) -> ServiceResult<Wanted> {
        if wanted.is_empty() {
            return Ok(wanted);
        }
        let shared_since = self.remote_members_since(requester).await?;
        let tracked: Vec<OwnedUserId> = wanted
            .values()
            .flat_map(|users| users.keys())
            .filter(|u| shared_since.contains_key(*u))
            .cloned()
            .collect();
        let cached = self.ctx.storage.remote_device_lists(&tracked).await?;
        let mut trusted: Vec<RemoteDeviceList> = cached
            .into_iter()
            .filter(|l| {
                shared_since
                    .get(&l.user_id)
                    .is_some_and(|s| l.fetched_pos >= *s)
            })
            .collect();
        let to_fetch: Vec<OwnedUserId> = tracked
            .into_iter()
            .filter(|u| !trusted.iter().any(|l| &l.user_id == u))
            .take(MAX_FETCHES_PER_QUERY)
            .collect();
        trusted.extend(self.fetch_lists(&to_fetch, timeout).await);
        for list in trusted {
            let server = list.user_id.server_name();
            let Some(devices) = wanted
                .get_mut(server)
                .and_then(|users| users.remove(&list.user_id))
            else {
                continue;
            };
            put_cached(answer, &list, &devices);
        }
        wanted.retain(|_, users| !users.is_empty());
        Ok(wanted)
    }

    /// Fetches (and caches) these users' device lists, all at once within `timeout`; the lists
    /// that could not be fetched are left out.
    async fn fetch_lists(&self, users: &[OwnedUserId], timeout: Duration) -> Vec<RemoteDeviceList> {
        let fetches = users.iter().map(|user_id| async move {
            match tokio::time::timeout(timeout, fetch_device_list(&self.ctx, user_id)).await {
                Ok(Ok(list)) => Some(list),
                Ok(Err(e)) => {
                    tracing::info!(%user_id, error = %e, "device list fetch failed");
                    None
                }
                Err(_) => None,
            }
        });
        join_all(fetches).await.into_iter().flatten().collect()
    }

    /// Remote users joined to a room the requester is joined to, each with the stream position
    /// since which they have (the oldest such member entry): a list fetched before then may
    /// have missed updates their server did not send us.
    async fn remote_members_since(
        &self,
        requester: &UserId,
    ) -> ServiceResult<HashMap<OwnedUserId, StreamPos>> {
        let own = self.ctx.server_name();
        let mut since: HashMap<OwnedUserId, StreamPos> = HashMap::new();
        for room_id in self.rooms.joined_rooms(requester).await? {
            let state = self.rooms.room_state(&room_id).await?;
            for (member, entry) in state.member_entries() {
                if member.server_name() == own || entry.membership() != Some(Membership::Join) {
                    continue;
                }
                since
                    .entry(member.to_owned())
                    .and_modify(|pos| *pos = (*pos).min(entry.pos))
                    .or_insert(entry.pos);
            }
        }
        Ok(since)
    }
}

/// Writes a cached list's wanted devices and cross-signing keys into a `/keys/query` answer.
fn put_cached(answer: &mut Value, list: &RemoteDeviceList, wanted: &[OwnedDeviceId]) {
    let (devices, master, self_signing) = cached_answer(list, wanted);
    let user = list.user_id.as_str();
    answer["device_keys"][user] = Value::Object(devices);
    if let Some(master) = master {
        answer["master_keys"][user] = master;
    }
    if let Some(self_signing) = self_signing {
        answer["self_signing_keys"][user] = self_signing;
    }
}
