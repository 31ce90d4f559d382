//! Long-lived WebSockets (log follows, terminals) re-check their caller while they run: a socket
//! closes, with the reason, when its session or API token is revoked or expires, its user is
//! disabled or demoted below the route's role, its node is revoked, its maximum lifetime is
//! reached, or the host shuts down.

use std::time::Duration;

use infrapilot_identity::Role;

use crate::auth::{Credential, Principal};
use crate::state::AppState;

/// Why a socket must close: sent as the close frame's reason.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Closing {
    /// WebSocket close code: 1001 (going away) or 1008 (policy violation).
    pub code: u16,
    pub reason: String,
}

/// What an open socket stands on: who opened it, the role its route needs, and its node.
pub struct SocketGuard {
    state: AppState,
    principal: Principal,
    required: Role,
    /// The node the socket reaches (none: the organisation's stored data, e.g. its logs).
    agent_id: Option<String>,
}

impl SocketGuard {
    pub fn new(state: AppState, principal: Principal, required: Role, agent_id: String) -> Self {
        SocketGuard {
            state,
            principal,
            required,
            agent_id: Some(agent_id),
        }
    }

    /// A socket on the organisation's data rather than one node.
    pub fn organisation(state: AppState, principal: Principal, required: Role) -> Self {
        SocketGuard {
            state,
            principal,
            required,
            agent_id: None,
        }
    }

    /// Resolves when the socket must close. Pin it once, outside the socket's loop.
    pub async fn closing(self) -> Closing {
        let settings = self.state.settings();
        let recheck = settings
            .socket_recheck
            .min(Duration::from_secs(
                u64::from(self.state.nodes().heartbeat_seconds()).max(1),
            ))
            .max(Duration::from_millis(100));
        let lifetime = tokio::time::sleep(settings.socket_max_lifetime);
        tokio::pin!(lifetime);
        let shutdown = self.state.shutdown_started();
        tokio::pin!(shutdown);
        let mut ticker = tokio::time::interval(recheck);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        ticker.tick().await;
        loop {
            tokio::select! {
                _ = &mut shutdown => return Closing { code: 1001, reason: "the host is shutting down".into() },
                _ = &mut lifetime => return Closing { code: 1008, reason: "the socket reached its maximum lifetime; open it again".into() },
                _ = ticker.tick() => {
                    if let Some(reason) = self.recheck().await {
                        return Closing { code: 1008, reason };
                    }
                }
            }
        }
    }

    /// Why the caller may no longer hold the socket, if so. Fails closed on a database error.
    async fn recheck(&self) -> Option<String> {
        let checked = async {
            let role = match &self.principal.credential {
                Credential::Session(id) => {
                    let mut lookup = self.state.store().lookup().await?;
                    if lookup.session_is_live(id).await? {
                        let memberships = lookup.memberships(&self.principal.user_id).await?;
                        let sso_org = lookup.session_sso_org(id).await?;
                        let org = &self.principal.org_id;
                        // The single sign-on policy holds for open sockets too: a session it
                        // no longer lets act here has lost its role here.
                        Some(crate::auth::role_among(&memberships, org).map(|role| {
                            role.filter(|r| {
                                crate::auth::sso_policy_allows(
                                    &memberships,
                                    org,
                                    *r,
                                    sso_org.as_deref(),
                                )
                            })
                        }))
                    } else {
                        None
                    }
                }
                Credential::ApiToken(id) => {
                    let mut tx = self.state.store().read(&self.principal.org_id).await?;
                    tx.live_api_token_role(id).await?.map(|(own, creator)| {
                        match (Role::parse(&own), Role::parse(&creator)) {
                            (Some(a), Some(b)) => Ok(Some(a.min(b))),
                            _ => Ok(None),
                        }
                    })
                }
            };
            let agent = match &self.agent_id {
                Some(id) => Some(
                    self.state
                        .store()
                        .read(&self.principal.org_id)
                        .await?
                        .agent(id)
                        .await?,
                ),
                None => None,
            };
            Ok::<_, infrapilot_store::StoreError>((role, agent))
        }
        .await;
        let (role, agent) = match checked {
            Ok(found) => found,
            Err(e) => {
                tracing::warn!(error = %e, "could not re-check a socket's caller; closing it");
                return Some("the host could not re-check your access".into());
            }
        };
        let Some(role) = role else {
            return Some("your session or token ended (signed out, revoked, expired or the account disabled)".into());
        };
        let role = match role {
            Ok(Some(role)) => role,
            Ok(None) => {
                return Some(
                    "you are no longer a member of this organisation, or it now requires single sign-on"
                        .into(),
                );
            }
            Err(_) => return Some("your role is unknown".into()),
        };
        if !role.at_least(self.required) {
            return Some(format!(
                "this needs the {} role; you now have {role}",
                self.required
            ));
        }
        match agent {
            None
            | Some(Some(infrapilot_store::AgentRow {
                revoked_at: None, ..
            })) => None,
            Some(_) => Some("the node was revoked".into()),
        }
    }
}

/// How long one message to a socket may wait for the client to read; a client that reads
/// nothing for this long loses the socket.
pub(crate) const SOCKET_SEND_TIMEOUT: Duration = Duration::from_secs(10);

/// Sends a close frame with `code` and `reason` (cut to fit a control frame).
pub(crate) async fn close_socket(
    socket: &mut axum::extract::ws::WebSocket,
    code: u16,
    reason: &str,
) {
    let frame = axum::extract::ws::Message::Close(Some(axum::extract::ws::CloseFrame {
        code,
        reason: reason.chars().take(120).collect::<String>().into(),
    }));
    let _ = tokio::time::timeout(SOCKET_SEND_TIMEOUT, socket.send(frame)).await;
}

/// Sends a text message, giving up after [`SOCKET_SEND_TIMEOUT`] (a client that stopped reading).
pub(crate) async fn send_text(socket: &mut axum::extract::ws::WebSocket, text: String) -> bool {
    matches!(
        tokio::time::timeout(
            SOCKET_SEND_TIMEOUT,
            socket.send(axum::extract::ws::Message::Text(text.into()))
        )
        .await,
        Ok(Ok(()))
    )
}
