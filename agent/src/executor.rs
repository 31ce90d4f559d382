//! Runs the host's commands on the node. Every command is acknowledged at once; container
//! actions go through the [`Ledger`], so a command delivered twice (same idempotency key) runs
//! once and the second delivery is answered with the first result. Log follows and exec
//! sessions stream over the agent's outbox until the host cancels them or the session ends.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use infrapilot_proto::v1::{
    AgentMessage, Command, CommandAck, CommandResult, ExecInput, ExecOutput, FetchLogs, LogChunk,
    agent_message, command, container_action::Action, log_chunk,
};
use tokio::sync::mpsc;
use tokio::task::AbortHandle;

use crate::docker::{DockerError, DockerNode};
use crate::ledger::{Admission, Ledger, Outcome, outcome};
use crate::proxy::Proxy;

pub struct Executor {
    docker: DockerNode,
    proxy: Option<Arc<Proxy>>,
    ledger: Ledger,
    outbox: mpsc::Sender<AgentMessage>,
    streams: Mutex<HashMap<String, AbortHandle>>,
    execs: Mutex<HashMap<String, mpsc::Sender<ExecInput>>>,
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

fn message(body: agent_message::Body) -> AgentMessage {
    AgentMessage { body: Some(body) }
}

fn json<T: serde::Serialize>(value: &T) -> String {
    serde_json::to_string(value).unwrap_or_default()
}

impl Executor {
    pub fn new(
        docker: DockerNode,
        proxy: Option<Arc<Proxy>>,
        ledger: Ledger,
        outbox: mpsc::Sender<AgentMessage>,
    ) -> Arc<Executor> {
        Arc::new(Executor {
            docker,
            proxy,
            ledger,
            outbox,
            streams: Mutex::new(HashMap::new()),
            execs: Mutex::new(HashMap::new()),
        })
    }

    pub fn docker(&self) -> &DockerNode {
        &self.docker
    }

    /// What this agent can do, for the hello.
    pub fn capabilities(&self) -> Vec<String> {
        let mut c = vec!["docker".to_owned(), "logs".to_owned(), "exec".to_owned()];
        if self.proxy.is_some() {
            c.push("nginx".to_owned());
        }
        c
    }

    /// The proxy revision this node serves, if it runs a proxy.
    pub fn serving_revision(&self) -> Option<u64> {
        self.proxy.as_ref().map(|p| p.serving_revision())
    }

    pub fn completed_keys(&self) -> Vec<String> {
        self.ledger.completed_keys()
    }

    async fn send(&self, body: agent_message::Body) {
        let _ = self.outbox.send(message(body)).await;
    }

    async fn reply(&self, command_id: &str, o: &Outcome) {
        self.send(agent_message::Body::Result(CommandResult {
            command_id: command_id.to_owned(),
            ok: o.ok,
            error: o.error.clone(),
            payload_json: o.payload_json.clone().into_bytes(),
            error_kind: o.error_kind.clone(),
        }))
        .await;
    }

    /// Acknowledges the command and runs it in the background.
    pub fn handle(self: &Arc<Self>, command: Command) {
        let this = self.clone();
        tokio::spawn(async move {
            this.send(agent_message::Body::Ack(CommandAck {
                command_id: command.command_id.clone(),
            }))
            .await;
            if command.expires_at_unix_ms > 0 && command.expires_at_unix_ms < now_ms() {
                let o = outcome(
                    false,
                    "the command expired before it reached the node".into(),
                    "expired",
                    String::new(),
                );
                this.reply(&command.command_id, &o).await;
                return;
            }
            let durable = matches!(
                command.kind,
                Some(command::Kind::ContainerAction(_) | command::Kind::CreateContainer(_))
            ) && !command.idempotency_key.is_empty();
            if durable {
                match this.ledger.admit(&command.idempotency_key) {
                    Admission::Run => {}
                    Admission::InProgress => return,
                    Admission::Done(o) => {
                        this.reply(&command.command_id, &o).await;
                        return;
                    }
                }
            }
            let o = this.run(&command).await;
            if durable {
                this.ledger.finish(&command.idempotency_key, o.clone());
            }
            this.reply(&command.command_id, &o).await;
        });
    }

    async fn run(self: &Arc<Self>, command: &Command) -> Outcome {
        let result: Result<String, DockerError> = match &command.kind {
            Some(command::Kind::ListContainers(c)) => self
                .docker
                .list(c.include_stopped, c.with_stats)
                .await
                .map(|l| json(&l)),
            Some(command::Kind::InspectContainer(c)) if c.raw => self
                .docker
                .inspect_raw(&c.container)
                .await
                .map(|d| json(&d)),
            Some(command::Kind::InspectContainer(c)) => {
                self.docker.inspect(&c.container).await.map(|d| json(&d))
            }
            Some(command::Kind::ContainerAction(c)) => {
                let action = Action::try_from(c.action).unwrap_or(Action::Unspecified);
                self.docker
                    .act(&c.container, action, c.timeout_seconds)
                    .await
                    .map(|o| json(&o))
            }
            Some(command::Kind::FetchLogs(f)) if f.follow => self
                .follow(f.clone())
                .await
                .map(|id| json(&serde_json::json!({"container": id}))),
            Some(command::Kind::FetchLogs(f)) => self.docker.logs_page(f).await.map(|p| json(&p)),
            Some(command::Kind::StartExec(e)) => self
                .exec(e.clone())
                .await
                .map(|()| json(&serde_json::json!({"session_id": e.session_id}))),
            Some(command::Kind::CreateContainer(c)) => {
                let outbox = self.outbox.clone();
                let stream_id = c.progress_stream_id.clone();
                let mut last_sent = std::time::Instant::now() - std::time::Duration::from_secs(1);
                self.docker
                    .create(c, &command.idempotency_key, move |progress| {
                        if stream_id.is_empty() {
                            return;
                        }
                        // At most ten messages a second (Docker sends one per chunk of every
                        // layer); state changes ("Pull complete" …) always.
                        let is_step = progress["current"].is_null();
                        if !is_step && last_sent.elapsed() < std::time::Duration::from_millis(100) {
                            return;
                        }
                        last_sent = std::time::Instant::now();
                        let _ = outbox.try_send(message(agent_message::Body::Progress(
                            infrapilot_proto::v1::CommandProgress {
                                stream_id: stream_id.clone(),
                                json: progress.to_string().into_bytes(),
                            },
                        )));
                    })
                    .await
                    .map(|o| json(&o))
            }
            Some(command::Kind::ApplyProxyConfig(c)) => match self.proxy() {
                Ok(proxy) => proxy.apply(c).await.map(|r| json(&r)),
                Err(e) => Err(e),
            },
            Some(command::Kind::CheckProxyDrift(_)) => match self.proxy() {
                Ok(proxy) => proxy.status().await.map(|r| json(&r)),
                Err(e) => Err(e),
            },
            None => Err(DockerError {
                kind: "invalid",
                message: "this agent does not know the command".into(),
            }),
        };
        match result {
            Ok(payload) => outcome(true, String::new(), "", payload),
            Err(e) => outcome(false, e.message, e.kind, String::new()),
        }
    }

    /// The proxy, or why this agent has none.
    fn proxy(&self) -> Result<&Arc<Proxy>, DockerError> {
        self.proxy.as_ref().ok_or(DockerError {
            kind: "invalid",
            message: "this agent does not manage a proxy".into(),
        })
    }

    async fn follow(self: &Arc<Self>, request: FetchLogs) -> Result<String, DockerError> {
        let id = self.docker.resolve(&request.container).await?;
        let this = self.clone();
        let stream_id = request.stream_id.clone();
        let key = stream_id.clone();
        let container_id = id.clone();
        let task = tokio::spawn(async move {
            let outbox = this.outbox.clone();
            let sid = request.stream_id.clone();
            let cid = container_id.clone();
            let result = this
                .docker
                .follow_logs(request, move |ns, line| {
                    let chunk = LogChunk {
                        stream_id: sid.clone(),
                        container_id: cid.clone(),
                        stream: if line.stream == "stderr" {
                            log_chunk::Stream::Stderr as i32
                        } else {
                            log_chunk::Stream::Stdout as i32
                        },
                        time_unix_ns: ns,
                        data: line.message.into_bytes(),
                        end: false,
                        error: String::new(),
                    };
                    // Never block Docker's stream on a slow host: a full outbox drops lines.
                    !matches!(
                        outbox.try_send(message(agent_message::Body::LogChunk(chunk))),
                        Err(mpsc::error::TrySendError::Closed(_))
                    )
                })
                .await;
            this.send(agent_message::Body::LogChunk(LogChunk {
                stream_id: stream_id.clone(),
                container_id,
                end: true,
                error: result.err().map(|e| e.message).unwrap_or_default(),
                ..Default::default()
            }))
            .await;
            this.streams
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .remove(&stream_id);
        });
        self.streams
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(key, task.abort_handle());
        Ok(id)
    }

    async fn exec(
        self: &Arc<Self>,
        request: infrapilot_proto::v1::StartExec,
    ) -> Result<(), DockerError> {
        let cols = u16::try_from(request.cols).unwrap_or(80);
        let rows = u16::try_from(request.rows).unwrap_or(24);
        let mut session = self
            .docker
            .start_exec(&request.container, request.command.clone(), cols, rows)
            .await?;
        let (input_tx, mut input_rx) = mpsc::channel::<ExecInput>(64);
        self.execs
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(request.session_id.clone(), input_tx);
        let this = self.clone();
        let session_id = request.session_id.clone();
        let control = session.control.clone();
        let task = tokio::spawn(async move {
            use futures_util::StreamExt;
            loop {
                tokio::select! {
                    chunk = session.output.next() => match chunk {
                        Some(Ok(out)) => {
                            this.send(agent_message::Body::ExecOutput(ExecOutput {
                                session_id: session_id.clone(),
                                data: out.into_bytes().to_vec(),
                                ..Default::default()
                            })).await;
                        }
                        Some(Err(_)) | None => break,
                    },
                    input = input_rx.recv() => match input {
                        Some(input) if input.close => break,
                        Some(input) => {
                            if input.cols > 0 && input.rows > 0 {
                                control.resize(
                                    u16::try_from(input.cols).unwrap_or(u16::MAX),
                                    u16::try_from(input.rows).unwrap_or(u16::MAX),
                                ).await;
                            }
                            if !input.data.is_empty() && session.write(&input.data).await.is_err() {
                                break;
                            }
                        }
                        None => break,
                    },
                }
            }
            drop(session);
            let exit_code = control.exit_code().await;
            this.send(agent_message::Body::ExecOutput(ExecOutput {
                session_id: session_id.clone(),
                exited: true,
                exit_code: exit_code.and_then(|c| i32::try_from(c).ok()).unwrap_or(-1),
                ..Default::default()
            }))
            .await;
            this.execs
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .remove(&session_id);
        });
        self.streams
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(request.session_id, task.abort_handle());
        Ok(())
    }

    /// Input (or a resize, or close) for an exec session.
    pub async fn exec_input(&self, input: ExecInput) {
        let sender = self
            .execs
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(&input.session_id)
            .cloned();
        if let Some(sender) = sender {
            let _ = sender.send(input).await;
        }
    }

    /// Ends a log follow or an exec session.
    pub fn cancel(&self, stream_id: &str) {
        if let Some(task) = self
            .streams
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(stream_id)
        {
            task.abort();
        }
        self.execs
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(stream_id);
    }

    /// The session ended: nobody reads the streams any more.
    pub fn cancel_all(&self) {
        for (_, task) in self
            .streams
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .drain()
        {
            task.abort();
        }
        self.execs.lock().unwrap_or_else(|e| e.into_inner()).clear();
    }
}
