//! Capabilities `config` (the plugin's settings as JSON) and `secrets` (its write-only
//! settings, one by name).

use wasmtime::component::{HasSelf, Linker};

use super::Capability;
use crate::bindings::alert_channel::infrapilot::plugin as wit;
use crate::runtime::HostState;

pub(super) fn register(linker: &mut Linker<HostState>) -> wasmtime::Result<()> {
    wit::config::add_to_linker::<_, HasSelf<_>>(linker, |s| s)
}

impl wit::config::Host for HostState {
    async fn settings(&mut self) -> String {
        if self.grant(Capability::Config).is_err() {
            return "{}".into();
        }
        self.settings_json.clone()
    }

    async fn secret(&mut self, name: String) -> Result<String, wit::config::ConfigError> {
        self.grant(Capability::Secrets)
            .map_err(wit::config::ConfigError::Denied)?;
        match self.secrets.get(&name) {
            Some(value) if !value.is_empty() => Ok(value.clone()),
            _ => Err(wit::config::ConfigError::NotSet(name)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::testing::state;
    use crate::bindings::alert_channel::infrapilot::plugin::config::{ConfigError, Host};

    #[tokio::test]
    async fn settings_and_secrets_each_need_their_grant() {
        let (mut denied, _) = state(serde_json::json!({}));
        denied.settings_json = r#"{"a":1}"#.into();
        denied.secrets.insert("token".into(), "s3cret".into());
        assert_eq!(denied.settings().await, "{}");
        assert!(matches!(
            denied.secret("token".into()).await,
            Err(ConfigError::Denied(_))
        ));
        let (mut granted, _) = state(serde_json::json!({"config": true, "secrets": true}));
        granted.settings_json = r#"{"a":1}"#.into();
        granted.secrets.insert("token".into(), "s3cret".into());
        assert_eq!(granted.settings().await, r#"{"a":1}"#);
        assert_eq!(granted.secret("token".into()).await.unwrap(), "s3cret");
        assert!(matches!(
            granted.secret("other".into()).await,
            Err(ConfigError::NotSet(_))
        ));
    }
}
