//! Capability `clock`: the wall-clock time (0 without the grant).

use super::Capability;
use crate::runtime::HostState;

impl HostState {
    pub(crate) fn clock_now_unix_ms(&mut self) -> u64 {
        if self.grant(Capability::Clock).is_err() {
            return 0;
        }
        self.services.now_unix_ms()
    }
}

#[cfg(test)]
mod tests {
    use super::super::testing::state;

    #[tokio::test]
    async fn the_time_needs_the_grant() {
        let (mut denied, _) = state(serde_json::json!({}));
        assert_eq!(denied.clock_now_unix_ms(), 0);
        let (mut granted, _) = state(serde_json::json!({"clock": true}));
        assert_eq!(granted.clock_now_unix_ms(), 1_700_000_000_000);
    }
}
