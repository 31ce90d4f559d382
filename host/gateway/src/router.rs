//! [`NodeRouter`]: how the API reaches nodes. Routes and services call this trait, never the
//! hub's internals; today's implementation is the in-process [`AgentHub`] (the agents holding a
//! session with this process). A multi-replica host adds one that forwards to the replica a
//! node is connected to.

use std::time::Duration;

use async_trait::async_trait;
use infrapilot_proto::v1::{Command, ExecInput, command};
use infrapilot_store::OrgId;

use crate::hub::{AgentHub, DurableCommand, HubError, Outcome, StreamReceiver};

#[async_trait]
pub trait NodeRouter: Send + Sync {
    /// The interval agents send heartbeats at (sockets re-check their caller as often).
    fn heartbeat_seconds(&self) -> u32;

    /// Whether the node holds a session this router can reach.
    fn is_connected(&self, agent_id: &str) -> bool;

    /// Ends the node's session now (revocation), with `reason`.
    fn end_session(&self, agent_id: &str, reason: &str);

    /// The body to store for a command carrying secrets: sealed with the master key.
    fn encode_sealed(&self, command: &Command) -> Result<Vec<u8>, HubError>;

    /// Sends a query (not stored) and waits for its answer.
    async fn query(
        &self,
        agent_id: &str,
        body: command::Kind,
        wait: Duration,
    ) -> Result<Outcome, HubError>;

    /// Stores and sends a durable command (or joins the one with the same idempotency key) and
    /// waits for its result.
    async fn execute(
        &self,
        org_id: &OrgId,
        command: DurableCommand<'_>,
    ) -> Result<Outcome, HubError>;

    /// Joins the durable command stored under `idempotency_key` for the node, if there is one
    /// (waits for its result; a command of another kind, target or body is
    /// [`HubError::KeyReused`]); `None` when there is none. Never sends anything new.
    async fn join_stored(
        &self,
        _org_id: &OrgId,
        _command: DurableCommand<'_>,
    ) -> Option<Result<Outcome, HubError>> {
        None
    }

    /// Sends a durable command the caller stored, and waits for its result.
    async fn dispatch(
        &self,
        org_id: &OrgId,
        agent_id: &str,
        command: Command,
        wait: Duration,
    ) -> Result<Outcome, HubError>;

    /// Registers a stream for what the node sends about a command (its progress).
    fn watch_stream(&self, agent_id: &str, stream_id: &str) -> StreamReceiver;

    /// Opens a log follow or an exec session once the node confirmed it started.
    async fn open_stream(
        &self,
        agent_id: &str,
        stream_id: &str,
        body: command::Kind,
        wait: Duration,
    ) -> Result<StreamReceiver, HubError>;

    /// Ends a stream on both sides.
    async fn close_stream(&self, agent_id: &str, stream_id: &str);

    /// Input for an exec session (keystrokes, resize, end).
    async fn exec_input(&self, agent_id: &str, input: ExecInput) -> Result<(), HubError>;
}

#[async_trait]
impl NodeRouter for AgentHub {
    fn heartbeat_seconds(&self) -> u32 {
        AgentHub::heartbeat_seconds(self)
    }

    fn is_connected(&self, agent_id: &str) -> bool {
        AgentHub::is_connected(self, agent_id)
    }

    fn end_session(&self, agent_id: &str, reason: &str) {
        AgentHub::end_session(self, agent_id, reason)
    }

    fn encode_sealed(&self, command: &Command) -> Result<Vec<u8>, HubError> {
        AgentHub::encode_sealed(self, command)
    }

    async fn query(
        &self,
        agent_id: &str,
        body: command::Kind,
        wait: Duration,
    ) -> Result<Outcome, HubError> {
        AgentHub::query(self, agent_id, body, wait).await
    }

    async fn execute(
        &self,
        org_id: &OrgId,
        command: DurableCommand<'_>,
    ) -> Result<Outcome, HubError> {
        AgentHub::execute(self, org_id, command).await
    }

    async fn join_stored(
        &self,
        org_id: &OrgId,
        command: DurableCommand<'_>,
    ) -> Option<Result<Outcome, HubError>> {
        AgentHub::join_stored(self, org_id, command).await
    }

    async fn dispatch(
        &self,
        org_id: &OrgId,
        agent_id: &str,
        command: Command,
        wait: Duration,
    ) -> Result<Outcome, HubError> {
        AgentHub::dispatch(self, org_id, agent_id, command, wait).await
    }

    fn watch_stream(&self, agent_id: &str, stream_id: &str) -> StreamReceiver {
        AgentHub::watch_stream(self, agent_id, stream_id)
    }

    async fn open_stream(
        &self,
        agent_id: &str,
        stream_id: &str,
        body: command::Kind,
        wait: Duration,
    ) -> Result<StreamReceiver, HubError> {
        AgentHub::open_stream(self, agent_id, stream_id, body, wait).await
    }

    async fn close_stream(&self, agent_id: &str, stream_id: &str) {
        AgentHub::close_stream(self, agent_id, stream_id).await
    }

    async fn exec_input(&self, agent_id: &str, input: ExecInput) -> Result<(), HubError> {
        AgentHub::exec_input(self, agent_id, input).await
    }
}
