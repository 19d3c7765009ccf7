//! Reports (spec: Client-Server API, "Reporting content"): users report events, rooms and other
//! users to this server's administrators. Reports are kept in storage; each user has a budget
//! of them (`rate_limits.report`). An event report answers the same whether the event does not
//! exist or the reporter may not see it, so reporting cannot probe a room.

use std::sync::Arc;

use myelin_storage::{ReportRecord, ReportTarget};
use ruma::{EventId, RoomId, UserId};

use crate::{accounts::Authed, Context, History, RateAction, Rooms, ServiceError, ServiceResult};

/// The longest reason kept.
pub const MAX_REASON_BYTES: usize = 2_000;

pub struct Reports {
    pub(crate) ctx: Arc<Context>,
    pub(crate) rooms: Arc<Rooms>,
    pub(crate) history: Arc<History>,
}

impl Reports {
    pub fn new(ctx: Arc<Context>, rooms: Arc<Rooms>, history: Arc<History>) -> Reports {
        Reports {
            ctx,
            rooms,
            history,
        }
    }

    /// `POST /rooms/{roomId}/report/{eventId}`: an event the reporter can see.
    pub async fn report_event(
        &self,
        authed: &Authed,
        room_id: &RoomId,
        event_id: &EventId,
        reason: Option<String>,
        score: Option<i64>,
    ) -> ServiceResult<()> {
        if score.is_some_and(|s| !(-100..=0).contains(&s)) {
            return Err(ServiceError::InvalidParam(
                "score must be between -100 and 0".into(),
            ));
        }
        let reason = checked_reason(reason)?;
        let not_found = || ServiceError::NotFound("Event not found".into());
        let visible = self
            .history
            .may_read_event(&authed.user_id, room_id, event_id)
            .await
            .unwrap_or(false);
        if !visible {
            return Err(not_found());
        }
        self.keep(
            authed,
            ReportTarget::Event {
                room_id: room_id.to_owned(),
                event_id: event_id.to_owned(),
            },
            reason,
            score,
        )
        .await
    }

    /// `POST /rooms/{roomId}/report`: a room this server knows.
    pub async fn report_room(
        &self,
        authed: &Authed,
        room_id: &RoomId,
        reason: Option<String>,
    ) -> ServiceResult<()> {
        let reason = checked_reason(reason)?;
        self.rooms
            .known_room_state(room_id)
            .await
            .map_err(|_| ServiceError::NotFound("Room not found".into()))?;
        self.keep(authed, ReportTarget::Room(room_id.to_owned()), reason, None)
            .await
    }

    /// `POST /users/{userId}/report`: one of our users that exists, or a user of another server
    /// (whose existence we cannot tell).
    pub async fn report_user(
        &self,
        authed: &Authed,
        user_id: &UserId,
        reason: Option<String>,
    ) -> ServiceResult<()> {
        let reason = checked_reason(reason)?;
        if user_id.server_name() == self.ctx.server_name()
            && self.ctx.storage.get_user(user_id).await?.is_none()
        {
            return Err(ServiceError::NotFound("User not found".into()));
        }
        self.keep(authed, ReportTarget::User(user_id.to_owned()), reason, None)
            .await
    }

    async fn keep(
        &self,
        authed: &Authed,
        target: ReportTarget,
        reason: Option<String>,
        score: Option<i64>,
    ) -> ServiceResult<()> {
        self.ctx
            .check_rate(RateAction::Report, authed.user_id.as_str())?;
        self.ctx
            .storage
            .add_report(ReportRecord {
                reporter: authed.user_id.clone(),
                target,
                reason,
                score,
                created_ms: self.ctx.now_ms(),
            })
            .await?;
        tracing::info!(reporter = %authed.user_id, "content reported");
        Ok(())
    }
}

fn checked_reason(reason: Option<String>) -> ServiceResult<Option<String>> {
    match reason {
        Some(r) if r.len() > MAX_REASON_BYTES => Err(ServiceError::InvalidParam(format!(
            "reason is longer than {MAX_REASON_BYTES} bytes"
        ))),
        other => Ok(other),
    }
}

#[cfg(test)]
mod tests;
