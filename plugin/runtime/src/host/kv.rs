//! Capability `kv`: a small key/value store per plugin, bounded keys and values.

use super::Capability;
use crate::contract::kv::KvError;
use crate::runtime::HostState;

const MAX_KV_KEY_BYTES: usize = 256;
const MAX_KV_VALUE_BYTES: usize = 64 << 10;

impl HostState {
    pub(crate) async fn kv_get(&mut self, key: String) -> Result<Option<Vec<u8>>, KvError> {
        self.check_kv(&key, 0)?;
        self.services.kv_get(&self.plugin_id, &key).await
    }

    pub(crate) async fn kv_set(&mut self, key: String, value: Vec<u8>) -> Result<(), KvError> {
        self.check_kv(&key, value.len())?;
        self.services.kv_set(&self.plugin_id, &key, value).await
    }

    pub(crate) async fn kv_delete(&mut self, key: String) -> Result<(), KvError> {
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
    use crate::contract::kv::KvError;

    #[tokio::test]
    async fn values_round_trip_within_bounds_when_granted() {
        let (mut denied, _) = state(serde_json::json!({}));
        assert!(matches!(
            denied.kv_get("k".into()).await,
            Err(KvError::Denied(_))
        ));
        let (mut granted, _) = state(serde_json::json!({"kv": true}));
        granted.kv_set("k".into(), b"v".to_vec()).await.unwrap();
        assert_eq!(
            granted.kv_get("k".into()).await.unwrap(),
            Some(b"v".to_vec())
        );
        granted.kv_delete("k".into()).await.unwrap();
        assert_eq!(granted.kv_get("k".into()).await.unwrap(), None);
        assert!(matches!(
            granted.kv_set("".into(), Vec::new()).await,
            Err(KvError::TooLarge)
        ));
        assert!(matches!(
            granted
                .kv_set("k".into(), vec![0; super::MAX_KV_VALUE_BYTES + 1])
                .await,
            Err(KvError::TooLarge)
        ));
        assert!(matches!(
            granted.kv_get("k".repeat(257)).await,
            Err(KvError::TooLarge)
        ));
    }
}
