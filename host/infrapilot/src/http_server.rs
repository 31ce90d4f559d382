//! The HTTP listener: hyper with a header-read timeout (slow clients that trickle headers are
//! cut off), a cap on connections served at once, and a shutdown that stops accepting, asks
//! every connection to finish, and gives up on the stragglers after a grace period.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::ConnectInfo;
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use tokio::net::TcpListener;

pub struct Limits {
    /// Connections served at once; further ones wait in the kernel's backlog.
    pub max_connections: usize,
    /// Time a client has to send a request's headers.
    pub header_read_timeout: Duration,
    /// How long in-flight requests may take to finish once shutdown began.
    pub shutdown_grace: Duration,
}

/// Serves `app` on `listener` until `shutdown` resolves, then drains within the grace period.
pub async fn serve(
    listener: TcpListener,
    app: Router,
    limits: Limits,
    shutdown: impl std::future::Future<Output = ()>,
) {
    // HTTP/1.1 only: browsers speak it (or HTTP/2 over TLS, which a TLS proxy in front ends);
    // cleartext HTTP/2 would let an idle connection sit forever between pings.
    let mut builder = auto::Builder::new(TokioExecutor::new()).http1_only();
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_read_timeout);
    let first_bytes_timeout = limits.header_read_timeout;
    let graceful = GracefulShutdown::new();
    let slots = Arc::new(tokio::sync::Semaphore::new(limits.max_connections.max(1)));
    tokio::pin!(shutdown);
    loop {
        let slot = tokio::select! {
            slot = slots.clone().acquire_owned() => match slot {
                Ok(slot) => slot,
                Err(_) => break,
            },
            _ = &mut shutdown => break,
        };
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(e) => {
                    // Out of file descriptors and the like: back off instead of spinning.
                    tracing::warn!(error = %e, "accepting a connection failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            _ = &mut shutdown => break,
        };
        let _ = stream.set_nodelay(true);
        let app = app.clone();
        let service = hyper::service::service_fn(move |mut request: hyper::Request<Incoming>| {
            request
                .extensions_mut()
                .insert(ConnectInfo::<SocketAddr>(peer));
            tower::ServiceExt::oneshot(app.clone(), request)
        });
        // The protocol sniffing before hyper's header timeout starts has no deadline of its own:
        // a client that connects and says nothing would hold its slot forever.
        let builder = builder.clone();
        let watcher = graceful.watcher();
        tokio::spawn(async move {
            let started = tokio::time::timeout(first_bytes_timeout, request_started(&stream)).await;
            if !matches!(started, Ok(true)) {
                tracing::debug!(%peer, "no request within the header timeout; closed");
                drop(slot);
                return;
            }
            let connection = builder
                .serve_connection_with_upgrades(TokioIo::new(stream), service)
                .into_owned();
            if let Err(e) = watcher.watch(connection).await {
                tracing::debug!(error = %e, %peer, "connection ended with an error");
            }
            drop(slot);
        });
    }
    drop(listener);
    tokio::select! {
        _ = graceful.shutdown() => tracing::info!("every HTTP connection finished"),
        _ = tokio::time::sleep(limits.shutdown_grace) => tracing::warn!(
            grace_seconds = limits.shutdown_grace.as_secs(),
            "connections still open after the grace period; closing them"
        ),
    }
}

/// Waits until the client has sent enough of its first request for hyper's protocol sniffing to
/// decide (24 bytes, or bytes that cannot be the HTTP/2 preface). False when it hung up.
async fn request_started(stream: &tokio::net::TcpStream) -> bool {
    const H2_PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
    let mut buf = [0u8; 24];
    loop {
        if stream.readable().await.is_err() {
            return false;
        }
        match stream.peek(&mut buf).await {
            Ok(0) | Err(_) => return false,
            Ok(n) if n >= 24 || buf[..n] != H2_PREFACE[..n] => return true,
            Ok(_) => tokio::time::sleep(Duration::from_millis(20)).await,
        }
    }
}
