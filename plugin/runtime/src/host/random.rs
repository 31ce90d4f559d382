//! Capability `random`: bytes from the operating system's generator, bounded per call.

use super::Capability;
use crate::runtime::HostState;

const MAX_RANDOM_BYTES: u32 = 4096;

impl HostState {
    pub(crate) fn random_fill(&mut self, len: u32) -> Vec<u8> {
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

    #[tokio::test]
    async fn bytes_are_bounded_and_need_the_grant() {
        let (mut denied, _) = state(serde_json::json!({}));
        assert!(denied.random_fill(16).is_empty());
        let (mut granted, _) = state(serde_json::json!({"random": true}));
        let (a, b) = (granted.random_fill(16), granted.random_fill(16));
        assert_eq!(a.len(), 16);
        assert_ne!(a, b);
        assert_eq!(
            granted.random_fill(1 << 20).len(),
            super::MAX_RANDOM_BYTES as usize
        );
    }
}
