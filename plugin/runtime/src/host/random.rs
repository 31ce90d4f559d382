//! Capability `random`: bytes from the operating system's generator, bounded per call.

use wasmtime::component::{HasSelf, Linker};

use super::Capability;
use crate::bindings::alert_channel::infrapilot::plugin as wit;
use crate::runtime::HostState;

const MAX_RANDOM_BYTES: u32 = 4096;

pub(super) fn register(linker: &mut Linker<HostState>) -> wasmtime::Result<()> {
    wit::random::add_to_linker::<_, HasSelf<_>>(linker, |s| s)
}

impl wit::random::Host for HostState {
    async fn fill(&mut self, len: u32) -> Vec<u8> {
        if self.grant(Capability::Random).is_err() {
            return Vec::new();
        }
        let mut bytes = vec![0u8; len.min(MAX_RANDOM_BYTES) as usize];
        if getrandom::fill(&mut bytes).is_err() {
            return Vec::new();
        }
        bytes
    }
}

#[cfg(test)]
mod tests {
    use super::super::testing::state;
    use crate::bindings::alert_channel::infrapilot::plugin::random::Host;

    #[tokio::test]
    async fn bytes_are_bounded_and_need_the_grant() {
        let (mut denied, _) = state(serde_json::json!({}));
        assert!(denied.fill(16).await.is_empty());
        let (mut granted, _) = state(serde_json::json!({"random": true}));
        let (a, b) = (granted.fill(16).await, granted.fill(16).await);
        assert_eq!(a.len(), 16);
        assert_ne!(a, b);
        assert_eq!(
            granted.fill(1 << 20).await.len(),
            super::MAX_RANDOM_BYTES as usize
        );
    }
}
