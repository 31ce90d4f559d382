//! The generated service over a real loopback connection: the agent opens the stream, says
//! hello, receives a welcome and a command, acknowledges and answers it.

use std::pin::Pin;

use infrapilot_proto::v1::agent_gateway_client::AgentGatewayClient;
use infrapilot_proto::v1::agent_gateway_server::{AgentGateway, AgentGatewayServer};
use infrapilot_proto::v1::{
    AgentMessage, Command, CommandAck, CommandResult, ContainerAction, Hello, HostMessage,
    ResultAck, Welcome, agent_message, command, container_action, host_message,
};
use tokio_stream::{Stream, StreamExt};
use tonic::{Request, Response, Status, Streaming};

struct Host;

type HostStream = Pin<Box<dyn Stream<Item = Result<HostMessage, Status>> + Send>>;

#[tonic::async_trait]
impl AgentGateway for Host {
    type SessionStream = HostStream;

    async fn session(
        &self,
        request: Request<Streaming<AgentMessage>>,
    ) -> Result<Response<Self::SessionStream>, Status> {
        let mut inbound = request.into_inner();
        let (tx, rx) = tokio::sync::mpsc::channel(8);
        tokio::spawn(async move {
            while let Some(Ok(message)) = inbound.next().await {
                let reply = match message.body {
                    Some(agent_message::Body::Hello(hello)) => vec![
                        host_message::Body::Welcome(Welcome {
                            agent_id: hello.agent_id,
                            heartbeat_seconds: 30,
                        }),
                        host_message::Body::Command(Command {
                            command_id: "c1".into(),
                            idempotency_key: "k1".into(),
                            expires_at_unix_ms: 0,
                            kind: Some(command::Kind::ContainerAction(ContainerAction {
                                container: "web".into(),
                                action: container_action::Action::Restart as i32,
                                timeout_seconds: 10,
                            })),
                        }),
                    ],
                    Some(agent_message::Body::Result(result)) => {
                        vec![host_message::Body::ResultAck(ResultAck {
                            command_id: result.command_id,
                        })]
                    }
                    _ => vec![],
                };
                for body in reply {
                    if tx.send(Ok(HostMessage { body: Some(body) })).await.is_err() {
                        return;
                    }
                }
            }
        });
        Ok(Response::new(Box::pin(
            tokio_stream::wrappers::ReceiverStream::new(rx),
        )))
    }
}

#[tokio::test]
async fn hello_command_ack_result_round_trip() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(
        tonic::transport::Server::builder()
            .add_service(AgentGatewayServer::new(Host))
            .serve_with_incoming(tokio_stream::wrappers::TcpListenerStream::new(listener)),
    );
    let channel = tonic::transport::Endpoint::from_shared(format!("http://{addr}"))
        .unwrap()
        .connect()
        .await
        .unwrap();
    let mut client = AgentGatewayClient::new(channel);
    let (tx, rx) = tokio::sync::mpsc::channel(8);
    let mut inbound = client
        .session(tokio_stream::wrappers::ReceiverStream::new(rx))
        .await
        .unwrap()
        .into_inner();
    let send = |body| AgentMessage { body: Some(body) };
    tx.send(send(agent_message::Body::Hello(Hello {
        agent_id: "agent-1".into(),
        version: "0.1.0".into(),
        capabilities: vec!["docker".into()],
        ..Default::default()
    })))
    .await
    .unwrap();

    let welcome = inbound.next().await.unwrap().unwrap();
    assert!(
        matches!(welcome.body, Some(host_message::Body::Welcome(ref w)) if w.agent_id == "agent-1")
    );
    let Some(host_message::Body::Command(cmd)) = inbound.next().await.unwrap().unwrap().body else {
        panic!("expected a command");
    };
    assert_eq!(cmd.idempotency_key, "k1");
    let Some(command::Kind::ContainerAction(action)) = cmd.kind else {
        panic!("expected a container action");
    };
    assert_eq!(action.action(), container_action::Action::Restart);

    tx.send(send(agent_message::Body::Ack(CommandAck {
        command_id: cmd.command_id.clone(),
    })))
    .await
    .unwrap();
    tx.send(send(agent_message::Body::Result(CommandResult {
        command_id: cmd.command_id.clone(),
        ok: true,
        ..Default::default()
    })))
    .await
    .unwrap();
    let ack = inbound.next().await.unwrap().unwrap();
    assert!(matches!(ack.body, Some(host_message::Body::ResultAck(ref a)) if a.command_id == "c1"));
}
