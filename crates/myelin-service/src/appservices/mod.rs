//! Application services (spec: Application Service API): the registrations
//! (`registration.rs`, held by the context so authentication can ask it), the durable
//! transaction push to each appservice (`pusher.rs`), what other subsystems buffer for them
//! between transactions (`buffer.rs`: MSC2409 ephemeral events, MSC3202 key changes), and the
//! questions the homeserver asks them (`queries.rs`: ping, users, aliases, third-party lookups).
//! Every request to an appservice goes through `ctx.egress`.

mod buffer;
mod pusher;
pub mod queries;
pub mod registration;
#[cfg(test)]
mod tests;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use myelin_federation::ClientOptions;

pub use buffer::Buffered;
pub use queries::PingFailure;
pub use registration::{load_files, Appservice, Namespace, Registry};

use crate::{Context, Rooms, ServiceError, ServiceResult};

/// How long a query to an appservice may take (transactions too).
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

pub struct Appservices {
    pub(crate) ctx: Arc<Context>,
    pub(crate) rooms: Arc<Rooms>,
    /// The HTTP client for appservices, built through the egress filter (`None` if it could
    /// not be built: every request then fails).
    http: Option<reqwest::Client>,
    /// The running push workers, by appservice ID.
    pushers: Mutex<HashMap<String, tokio::task::JoinHandle<()>>>,
}

impl Appservices {
    pub fn new(ctx: Arc<Context>, rooms: Arc<Rooms>) -> Appservices {
        let options = ClientOptions {
            timeout: REQUEST_TIMEOUT,
            max_redirects: 0,
            ..ClientOptions::default()
        };
        let http = match ctx.egress.client(&options) {
            Ok(client) => Some(client),
            Err(e) => {
                tracing::error!(error = %e, "cannot build the HTTP client for application services");
                None
            }
        };
        Appservices {
            ctx,
            rooms,
            http,
            pushers: Mutex::default(),
        }
    }

    /// Replaces the registrations (a reload) and starts workers for new ones; workers of
    /// registrations that are gone stop by themselves.
    pub fn reload(self: &Arc<Self>, list: Vec<Appservice>) {
        self.ctx.appservices.replace(list);
        self.start_pushers();
    }

    /// `PUT /directory/list/appservice/{networkId}/{roomId}`: the appservice publishes the room
    /// in (or withdraws it from) the directory of its network `network_id`, which
    /// `/publicRooms` lists under `third_party_instance_id` or `include_all_networks`. A room
    /// we do not know is not found (withdrawing works whatever its state).
    pub async fn set_room_published(
        &self,
        appservice_id: &str,
        network_id: &str,
        room_id: &ruma::RoomId,
        public: bool,
    ) -> ServiceResult<()> {
        if public {
            self.rooms.room_state(room_id).await?;
        }
        self.ctx
            .storage
            .set_network_room_published(appservice_id, network_id, room_id, public)
            .await?;
        Ok(())
    }

    /// A request to `{url}/{path}` with the `hs_token`, after the egress check.
    pub(crate) async fn request(
        &self,
        a: &Appservice,
        method: reqwest::Method,
        path: &str,
        query: &[(String, String)],
    ) -> ServiceResult<reqwest::RequestBuilder> {
        let base = a
            .url
            .as_ref()
            .ok_or_else(|| ServiceError::Remote(format!("appservice {} has no URL", a.id)))?;
        let mut url =
            reqwest::Url::parse(&format!("{}/{path}", base.as_str().trim_end_matches('/')))
                .map_err(|e| ServiceError::Internal(format!("appservice URL: {e}")))?;
        if !query.is_empty() {
            url.query_pairs_mut().extend_pairs(query);
        }
        self.ctx
            .egress
            .check_url(&url)
            .map_err(|e| ServiceError::Remote(format!("appservice {}: {e}", a.id)))?;
        let http = self
            .http
            .as_ref()
            .ok_or_else(|| ServiceError::Internal("no HTTP client for appservices".into()))?;
        Ok(http.request(method, url).bearer_auth(a.hs_token.expose()))
    }
}
