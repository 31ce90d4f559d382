//! Building audit events from requests, and recording the ones that stand alone (failed logins,
//! denied actions) whose triggering change was rolled back or never made.

use infrapilot_identity::Role;
use infrapilot_store::{NewAuditEvent, Tx};
use serde_json::{Value, json};

use crate::auth::{ClientInfo, Principal};
use crate::error::ApiResult;
use crate::state::AppState;

/// Who acted.
#[derive(Debug, Clone)]
pub struct Actor {
    pub id: Option<String>,
    pub label: String,
}

impl Actor {
    pub fn user(principal: &Principal) -> Actor {
        Actor {
            id: Some(principal.user_id.clone()),
            label: principal.email.clone(),
        }
    }

    /// A user acting for themselves before they hold a token (login, setup).
    pub fn of_user(user: &infrapilot_store::UserRow) -> Actor {
        Actor {
            id: Some(user.id.clone()),
            label: user.email.clone(),
        }
    }

    pub fn anonymous() -> Actor {
        Actor {
            id: None,
            label: "anonymous".into(),
        }
    }

    /// The command line (`infrapilot admin …`), run by whoever has the host's shell.
    pub fn cli() -> Actor {
        Actor {
            id: None,
            label: "cli".into(),
        }
    }
}

/// Where a request came from; the CLI passes `local`.
pub fn origin_ip(client: Option<&ClientInfo>) -> String {
    client
        .map(|c| c.ip.clone())
        .unwrap_or_else(|| "local".into())
}

pub fn event(
    actor: &Actor,
    ip: &str,
    action: &str,
    target: &str,
    outcome: &str,
    detail: Value,
) -> NewAuditEvent {
    NewAuditEvent {
        actor_id: actor.id.clone(),
        actor: actor.label.clone(),
        action: action.to_owned(),
        target: target.to_owned(),
        ip: ip.to_owned(),
        outcome: outcome.to_owned(),
        detail,
    }
}

/// Appends a successful action to the transaction that made the change.
pub async fn success(
    tx: &mut Tx,
    actor: &Actor,
    ip: &str,
    action: &str,
    target: &str,
    detail: Value,
) -> ApiResult<()> {
    tx.append_audit(event(actor, ip, action, target, "success", detail))
        .await?;
    Ok(())
}

/// Appends a successful action to the transaction that made the change, and commits both.
pub async fn commit_success(
    mut tx: Tx,
    actor: &Actor,
    ip: &str,
    action: &str,
    target: &str,
    detail: Value,
) -> ApiResult<()> {
    success(&mut tx, actor, ip, action, target, detail).await?;
    tx.commit().await?;
    Ok(())
}

/// Records an event in its own transaction. Failures are logged, never shown to the caller.
pub async fn record_standalone(
    state: &AppState,
    org_id: &infrapilot_store::OrgId,
    event: NewAuditEvent,
) {
    if let Err(e) = state.store().record_audit(org_id, event).await {
        tracing::error!(error = %e, "could not record audit event");
    }
}

/// Records a state-changing request refused for want of a role.
pub async fn record_denied(
    state: &AppState,
    principal: &Principal,
    client: &ClientInfo,
    method: &str,
    route: &str,
    required: Role,
) {
    let e = event(
        &Actor::user(principal),
        &client.ip,
        "access.denied",
        &format!("{method} {route}"),
        "denied",
        json!({"required_role": required.as_str(), "role": principal.role.as_str()}),
    );
    record_standalone(state, &principal.org_id, e).await;
}
