//! A test-only single sign-on provider whose "identity provider" is its settings: `issuer` and
//! the `groups` every identity gets. `begin-login` builds an authorize URL from the login
//! request; `complete-login` accepts a callback with `code=good-<subject>` and the request's
//! `state`; `check-password` knows one user, `alice` with password `wonderland`.

use infrapilot_plugin_sdk::json::Value;
use infrapilot_plugin_sdk::sso::{
    Identity, LoginCallback, LoginRedirect, LoginRequest, PluginError, SsoProvider, config, log,
};

fn settings() -> Result<Value, PluginError> {
    infrapilot_plugin_sdk::json::from_str(&config::settings())
        .map_err(|e| PluginError::InvalidSettings(format!("settings: {e}")))
}

fn issuer(settings: &Value) -> Result<String, PluginError> {
    settings["issuer"]
        .as_str()
        .map(str::to_owned)
        .ok_or_else(|| PluginError::InvalidSettings("issuer: missing".into()))
}

fn identity(subject: &str) -> Result<Identity, PluginError> {
    let settings = settings()?;
    let groups = settings["groups"]
        .as_array()
        .map(|g| {
            g.iter()
                .filter_map(|v| v.as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default();
    Ok(Identity {
        subject: subject.to_owned(),
        issuer: issuer(&settings)?,
        email: Some(format!("{subject}@example.com")),
        email_verified: true,
        name: None,
        groups,
    })
}

struct TestProvider;

impl SsoProvider for TestProvider {
    fn begin_login(request: LoginRequest) -> Result<LoginRedirect, PluginError> {
        let issuer = issuer(&settings()?)?;
        Ok(LoginRedirect {
            url: format!(
                "{issuer}/authorize?redirect_uri={}&state={}&nonce={}&verifier_chars={}",
                request.callback_url,
                request.state,
                request.nonce,
                request.pkce_verifier.len()
            ),
        })
    }

    fn complete_login(callback: LoginCallback) -> Result<Identity, PluginError> {
        let param = |name: &str| {
            callback
                .params
                .iter()
                .find(|(k, _)| k == name)
                .map(|(_, v)| v.as_str())
        };
        if param("state") != Some(callback.request.state.as_str()) {
            return Err(PluginError::Failed(
                "state: does not match the login".into(),
            ));
        }
        let code = param("code").ok_or_else(|| PluginError::Failed("code: missing".into()))?;
        let subject = code
            .strip_prefix("good-")
            .ok_or_else(|| PluginError::Failed("code: refused by the identity provider".into()))?;
        log::log(log::Level::Info, &format!("login of {subject}"));
        identity(subject)
    }

    fn check_password(username: String, password: String) -> Result<Identity, PluginError> {
        if username == "alice" && password == "wonderland" {
            identity("alice")
        } else {
            Err(PluginError::Failed("wrong username or password".into()))
        }
    }
}

infrapilot_plugin_sdk::export_sso_provider!(TestProvider);
