//! Everything a single sign-on provider needs: the trait to implement and the login model. A
//! provider reports who signed in and the groups the identity provider names; the host maps
//! groups to roles and keys people by (provider, subject), so nothing a provider returns can
//! grant a right by itself.

pub use crate::sso_provider::exports::infrapilot::plugin::sso::Guest as SsoProvider;
pub use crate::sso_provider::infrapilot::plugin::sso_model::{
    Identity, LoginCallback, LoginError, LoginMethod, LoginRequest, LoginStart, PostForm,
};
pub use crate::sso_provider::infrapilot::plugin::types::PluginError;
pub use crate::sso_provider::infrapilot::plugin::{
    clock, config, http, jws, kv, ldap, log, random, saml,
};

/// The provider's settings (the JSON object an administrator saved), read as `T`.
pub fn settings<T: serde::de::DeserializeOwned>() -> Result<T, LoginError> {
    serde_json::from_str(&config::settings())
        .map_err(|e| LoginError::InvalidSettings(format!("settings: {e}")))
}
