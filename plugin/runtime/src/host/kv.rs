//! Capability `kv`: a small key/value store per plugin, bounded keys and values.

use wasmtime::component::{HasSelf, Linker};

use super::Capability;
use crate::bindings::alert_channel::infrapilot::plugin as wit;
use crate::bindings::kv::KvError;
use crate::runtime::HostState;

const MAX_KV_KEY_BYTES: usize = 256;
const MAX_KV_VALUE_BYTES: usize = 64 << 10;

pub(super) fn register(linker: &mut Linker<HostState>) -> wasmtime::Result<()> {
    wit::kv::add_to_linker::<_, HasSelf<_>>(linker, |s| s)
}

impl wit::kv::Host for HostState {
    async fn get(&mut self, key: String) -> Result<Option<Vec<u8>>, KvError> {
        self.check_kv(&key, 0)?;
        self.services.kv_get(&self.plugin_id, &key).await
    }

    async fn set(&mut self, key: String, value: Vec<u8>) -> Result<(), KvError> {
        self.check_kv(&key, value.len())?;
        self.services.kv_set(&self.plugin_id, &key, value).await
    }

    async fn delete(&mut self, key: String) -> Result<(), KvError> {
        self.check_kv(&key, 0)?;
        self.services.kv_delete(&self.plugin_id, &key).await
    }
}

impl HostState {
    fn check_kv(&mut self, key: &str, value_len: usize) -> Result<(), KvError> {
        self.grant(Capability::Kv).map_err(KvError::Denied)?;
        if key.is_empty() || key.len() > MAX_KV_KEY_BYTES || value_len > MAX_KV_VALUE_BYTES {
            return Err(KvError::TooLarge);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::super::testing::state;
    use crate::bindings::alert_channel::infrapilot::plugin::kv::Host;
    use crate::bindings::kv::KvError;

    #[tokio::test]
    async fn values_round_trip_within_bounds_when_granted() {
        let (mut denied, _) = state(serde_json::json!({}));
        assert!(matches!(
            denied.get("k".into()).await,
            Err(KvError::Denied(_))
        ));
        let (mut granted, _) = state(serde_json::json!({"kv": true}));
        granted.set("k".into(), b"v".to_vec()).await.unwrap();
        assert_eq!(granted.get("k".into()).await.unwrap(), Some(b"v".to_vec()));
        granted.delete("k".into()).await.unwrap();
        assert_eq!(granted.get("k".into()).await.unwrap(), None);
        assert!(matches!(
            granted.set("".into(), Vec::new()).await,
            Err(KvError::TooLarge)
        ));
        assert!(matches!(
            granted
                .set("k".into(), vec![0; super::MAX_KV_VALUE_BYTES + 1])
                .await,
            Err(KvError::TooLarge)
        ));
        assert!(matches!(
            granted.get("k".repeat(257)).await,
            Err(KvError::TooLarge)
        ));
    }
}
