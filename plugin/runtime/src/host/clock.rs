//! Capability `clock`: the wall-clock time (0 without the grant).

use wasmtime::component::{HasSelf, Linker};

use super::Capability;
use crate::bindings::alert_channel::infrapilot::plugin as wit;
use crate::runtime::HostState;

pub(super) fn register(linker: &mut Linker<HostState>) -> wasmtime::Result<()> {
    wit::clock::add_to_linker::<_, HasSelf<_>>(linker, |s| s)
}

impl wit::clock::Host for HostState {
    async fn now_unix_ms(&mut self) -> u64 {
        if self.grant(Capability::Clock).is_err() {
            return 0;
        }
        self.services.now_unix_ms()
    }
}

#[cfg(test)]
mod tests {
    use super::super::testing::state;
    use crate::bindings::alert_channel::infrapilot::plugin::clock::Host;

    #[tokio::test]
    async fn the_time_needs_the_grant() {
        let (mut denied, _) = state(serde_json::json!({}));
        assert_eq!(denied.now_unix_ms().await, 0);
        let (mut granted, _) = state(serde_json::json!({"clock": true}));
        assert_eq!(granted.now_unix_ms().await, 1_700_000_000_000);
    }
}
