//! The numeric limits of the installed licence (`limits` in the licence file), enforced where
//! the counted things are made: `nodes` (per organisation) at enrollment, `users` (on the host)
//! at user creation, `members` (per organisation) wherever someone joins one. A check and its
//! insert share one transaction serialised per limit, so parallel requests cannot overshoot.

use axum::http::StatusCode;
use infrapilot_store::Tx;

use crate::error::{ApiError, ApiResult};
use crate::state::AppState;

/// What a licence limit counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Limited {
    /// Active nodes of an organisation.
    Nodes,
    /// Accounts on the host.
    Users,
    /// Members of an organisation (checked by the organisation service).
    Members,
}

impl Limited {
    fn key(self) -> &'static str {
        match self {
            Limited::Nodes => "nodes",
            Limited::Users => "users",
            Limited::Members => "members",
        }
    }
}

/// The limit of the valid installed licence for `what`, if it sets one.
pub async fn limit(state: &AppState, what: Limited) -> ApiResult<Option<u64>> {
    let Ok(extensions) = state.extensions() else {
        return Ok(None);
    };
    let status = extensions.plugins.license_status().await?;
    Ok(status
        .valid
        .then(|| status.limits.get(what.key()).copied())
        .flatten())
}

/// Refuses one more of `what` in `tx` when `max` (from [`limit`], read before the write
/// transaction began: reading the licence needs a connection of its own) is reached. Call it in
/// the transaction that inserts, before the insert.
pub async fn check(tx: &mut Tx, what: Limited, max: Option<u64>, field: &str) -> ApiResult<()> {
    let Some(max) = max else {
        return Ok(());
    };
    tx.serialize(&format!("limit:{}", what.key())).await?;
    let current = match what {
        Limited::Nodes => tx.count_active_agents().await?,
        Limited::Users => tx.count_users().await?,
        Limited::Members => tx.count_members().await?,
    };
    if u64::try_from(current).unwrap_or(0) >= max {
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "license_limit",
            format!(
                "the licence allows {max} {} and {current} exist; revoke or remove one, or install a licence with a higher limit",
                what.key()
            ),
        )
        .with_field(field));
    }
    Ok(())
}
