//! A test-only single sign-on provider whose "identity provider" is its settings: `issuer`,
//! and what every identity gets (`name`, `email_verified`, `groups`, `amr`, `acr`). Settings
//! may also ask it to misbehave (`redirect`: the URL `begin-login` answers; `group_count`: that
//! many groups). `begin-login` builds an authorize URL from the login request (or a SAML-style
//! form when `post` is set) and a context; `complete-login` accepts a callback with
//! `code=good-<subject>`, the request's `state`, the verifier and context it was given, and
//! echoes them in attributes; `check-password` knows `alice` / `wonderland`.

use infrapilot_plugin_sdk::json::Value;
use infrapilot_plugin_sdk::sso::{
    Identity, LoginCallback, LoginError, LoginMethod, LoginRequest, LoginStart, PluginError,
    PostForm, SsoProvider, log, settings,
};

fn issuer(settings: &Value) -> Result<String, LoginError> {
    settings["issuer"]
        .as_str()
        .map(str::to_owned)
        .ok_or_else(|| LoginError::InvalidSettings("issuer: missing".into()))
}

fn strings(value: &Value) -> Vec<String> {
    value
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|v| v.as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default()
}

fn identity(subject: &str, mut attributes: Vec<(String, String)>) -> Result<Identity, LoginError> {
    let settings: Value = settings()?;
    // How the person "signed in", for the host's MFA policy.
    if settings["amr"].is_array() {
        attributes.push(("amr".into(), settings["amr"].to_string()));
    }
    if let Some(acr) = settings["acr"].as_str() {
        attributes.push(("acr".into(), acr.to_owned()));
    }
    let mut groups = strings(&settings["groups"]);
    if let Some(n) = settings["group_count"].as_u64() {
        groups = (0..n).map(|i| format!("g{i}")).collect();
    }
    Ok(Identity {
        subject: subject.to_owned(),
        issuer: issuer(&settings)?,
        email: Some(format!("{subject}@example.com")),
        email_verified: settings["email_verified"].as_bool().unwrap_or(false),
        name: settings["name"].as_str().map(str::to_owned),
        groups,
        attributes,
    })
}

struct TestProvider;

impl SsoProvider for TestProvider {
    fn validate() -> Result<(), PluginError> {
        let settings: Value =
            infrapilot_plugin_sdk::json::from_str(&infrapilot_plugin_sdk::sso::config::settings())
                .map_err(|e| PluginError::InvalidSettings(e.to_string()))?;
        match settings["issuer"].as_str() {
            Some(i) if i.starts_with("https://") => Ok(()),
            _ => Err(PluginError::InvalidSettings(
                "issuer: must be an https URL".into(),
            )),
        }
    }

    fn begin_login(request: LoginRequest) -> Result<LoginStart, LoginError> {
        let settings: Value = settings()?;
        let issuer = issuer(&settings)?;
        let method = if let Some(url) = settings["redirect"].as_str() {
            LoginMethod::Redirect(url.to_owned())
        } else if settings["post"].as_bool() == Some(true) {
            LoginMethod::Post(PostForm {
                action: format!("{issuer}/sso"),
                fields: vec![
                    ("SAMLRequest".into(), format!("req-for-{}", request.nonce)),
                    ("RelayState".into(), request.state.clone()),
                ],
            })
        } else {
            LoginMethod::Redirect(format!(
                "{issuer}/authorize?redirect_uri={}&state={}&nonce={}&code_challenge={}&code_challenge_method=S256",
                request.callback_url, request.state, request.nonce, request.code_challenge
            ))
        };
        Ok(LoginStart {
            method,
            context: Some(format!("ctx-{}", request.state)),
        })
    }

    fn complete_login(callback: LoginCallback) -> Result<Identity, LoginError> {
        let param = |name: &str| {
            callback
                .params
                .iter()
                .find(|(k, _)| k == name)
                .map(|(_, v)| v.as_str())
        };
        if param("state") != Some(callback.request.state.as_str()) {
            return Err(LoginError::Rejected(
                "state: does not match the login".into(),
            ));
        }
        let code = param("code").ok_or_else(|| LoginError::Rejected("code: missing".into()))?;
        if code == "down" {
            return Err(LoginError::Unavailable(
                "the identity provider answered 503".into(),
            ));
        }
        let subject = code
            .strip_prefix("good-")
            .ok_or_else(|| LoginError::Rejected("code: refused by the identity provider".into()))?;
        log::log(log::Level::Info, &format!("login of {subject}"));
        let echoed = vec![
            ("callback_url".into(), callback.request.callback_url.clone()),
            ("nonce".into(), callback.request.nonce.clone()),
            (
                "code_challenge".into(),
                callback.request.code_challenge.clone(),
            ),
            ("code_verifier".into(), callback.code_verifier.clone()),
            (
                "context".into(),
                callback.context.clone().unwrap_or_default(),
            ),
        ];
        identity(subject, echoed)
    }

    fn check_password(username: String, password: String) -> Result<Identity, LoginError> {
        let settings: Value = settings()?;
        if settings["directory"].as_bool() != Some(true) {
            return Err(LoginError::Unsupported);
        }
        if username == "alice" && password == "wonderland" {
            identity("alice", Vec::new())
        } else {
            Err(LoginError::Rejected("wrong username or password".into()))
        }
    }
}

infrapilot_plugin_sdk::export_sso_provider!(TestProvider);
