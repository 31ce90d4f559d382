//! The InfraPilot node agent. Today: enrollment (the node makes its own key and CSR, trades a
//! one-time token for a certificate signed by the host CA) and its state directory, which holds
//! the trust material with mode 0600 and without which the agent refuses to run (fail closed).
//! `session` holds the outbound mTLS gRPC stream (hello, heartbeats, reconnect); `executor` runs
//! the host's commands on the local Docker engine (`docker`), once per idempotency key (`ledger`).
//! `spool` is the on-disk, bounded, checksummed queue of what must reach the host through any
//! outage (log lines, Docker events; issue 17 — not wired into the session yet).

pub mod certs;
pub mod docker;
pub mod enroll;
pub mod executor;
pub mod ledger;
pub mod proxy;
pub mod session;
pub mod shipper;
pub mod spool;
pub mod state;
pub mod tls_hello;
pub mod tls_probe;

pub use enroll::{EnrollError, EnrollOptions, enroll};
pub use state::{StateDir, StateError, TrustMaterial};
