//! Everything a policy engine needs: the trait to implement and the policy model. The host hands
//! over a request already normalised (a container's configuration in one canonical form, the
//! proxy hosts a change deploys) with the organisation's policies of this engine's types, and
//! decides itself what a finding does (block, warn or audit).

pub use crate::policy_engine::exports::infrapilot::plugin::engine::{
    Guest as PolicyEngine, GuestPolicySet, PolicySet,
};
pub use crate::policy_engine::infrapilot::plugin::log;
pub use crate::policy_engine::infrapilot::plugin::policy_model::{
    Action, Container, Finding, Mount, MountKind, Policy, PolicyType, ProxyHost, Request,
};
pub use crate::policy_engine::infrapilot::plugin::types::PluginError;

impl Action {
    /// The action's name as the API and the audit trail write it: `container.start` …
    pub fn as_str(self) -> &'static str {
        match self {
            Action::ContainerCreate => "container.create",
            Action::ContainerStart => "container.start",
            Action::ContainerStop => "container.stop",
            Action::ContainerRestart => "container.restart",
            Action::ContainerRemove => "container.remove",
            Action::ContainerExec => "container.exec",
            Action::ProxyCreate => "proxy.create",
            Action::ProxyUpdate => "proxy.update",
            Action::ProxyDelete => "proxy.delete",
            Action::ProxyRollback => "proxy.rollback",
            Action::ProxyReapply => "proxy.reapply",
            Action::CertificateChange => "certificate.change",
            Action::ContainerRunning => "container.running",
        }
    }
}

impl MountKind {
    /// `bind`, `volume`, `tmpfs`, `device`, `volumes_from`.
    pub fn as_str(self) -> &'static str {
        match self {
            MountKind::Bind => "bind",
            MountKind::Volume => "volume",
            MountKind::Tmpfs => "tmpfs",
            MountKind::Device => "device",
            MountKind::VolumesFrom => "volumes_from",
        }
    }
}
