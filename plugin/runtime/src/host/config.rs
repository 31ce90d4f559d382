//! Capabilities `config` (the plugin's settings as JSON) and `secrets` (its write-only
//! settings, one by name).

use super::Capability;
use crate::contract::config::ConfigError;
use crate::runtime::HostState;

impl HostState {
    pub(crate) fn config_settings(&mut self) -> String {
        if self.grant(Capability::Config).is_err() {
            return "{}".into();
        }
        self.settings_json.clone()
    }

    pub(crate) fn config_secret(&mut self, name: String) -> Result<String, ConfigError> {
        self.grant(Capability::Secrets)
            .map_err(ConfigError::Denied)?;
        match self.secrets.get(&name) {
            Some(value) if !value.is_empty() => Ok(value.clone()),
            _ => Err(ConfigError::NotSet(name)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::testing::state;
    use crate::contract::config::ConfigError;

    #[tokio::test]
    async fn settings_and_secrets_each_need_their_grant() {
        let (mut denied, _) = state(serde_json::json!({}));
        denied.settings_json = r#"{"a":1}"#.into();
        denied.secrets.insert("token".into(), "s3cret".into());
        assert_eq!(denied.config_settings(), "{}");
        assert!(matches!(
            denied.config_secret("token".into()),
            Err(ConfigError::Denied(_))
        ));
        let (mut granted, _) = state(serde_json::json!({"config": true, "secrets": true}));
        granted.settings_json = r#"{"a":1}"#.into();
        granted.secrets.insert("token".into(), "s3cret".into());
        assert_eq!(granted.config_settings(), r#"{"a":1}"#);
        assert_eq!(granted.config_secret("token".into()).unwrap(), "s3cret");
        assert!(matches!(
            granted.config_secret("other".into()),
            Err(ConfigError::NotSet(_))
        ));
    }
}
