//! The agent ⇄ host protocol, generated from `agent.proto`. Depends on nothing of the host.

#![allow(clippy::large_enum_variant, clippy::doc_lazy_continuation)]

/// `infrapilot.agent.v1`
pub mod v1 {
    tonic::include_proto!("infrapilot.agent.v1");
}

pub mod model;
