//! World `sso-provider` (from contract 0.2.0): its handle ([`SsoProviderPlugin`]), and the
//! dispatch of its calls to the contract version the component was built against. A provider
//! reports an identity; the host alone turns it into a person, a membership and a role.

use wasmtime::Store;
use wasmtime::component::InstancePre;

use crate::contract::{
    Identity, LoginCallback, LoginError, LoginMethod, LoginRequest, LoginStart, PluginError,
};
use crate::runtime::{HookError, HostState, Invocation, PluginCore, WorldPlugin};
use crate::versions::ContractVersion;
use infrapilot_plugin_types::manifest::World;

/// What a provider may answer, at most: the host stores and shows these, so a plugin cannot
/// flood it through an identity any more than through its other output.
pub mod limits {
    /// `subject`: 1 to this many bytes.
    pub const SUBJECT_BYTES: usize = 255;
    pub const ISSUER_BYTES: usize = 1024;
    pub const EMAIL_BYTES: usize = 320;
    pub const NAME_BYTES: usize = 256;
    pub const GROUPS: usize = 256;
    /// Each group: 1 to this many bytes.
    pub const GROUP_BYTES: usize = 256;
    pub const ATTRIBUTES: usize = 64;
    pub const ATTRIBUTE_BYTES: usize = 1024;
    /// A redirect or form action URL.
    pub const URL_BYTES: usize = 8192;
    pub const FORM_FIELDS: usize = 32;
    pub const FORM_BYTES: usize = 64 << 10;
    pub const CONTEXT_BYTES: usize = 4096;
}

/// A loaded single sign-on provider, ready to be called concurrently. Each call answers the
/// provider's own verdict (`Ok(Err(LoginError))`: rejected, unsupported …) or, outside, what
/// went wrong running it ([`HookError`]: deadline, trap, an answer over the limits).
#[derive(Clone)]
pub struct SsoProviderPlugin {
    core: PluginCore,
    pre: ProviderPre,
}

impl SsoProviderPlugin {
    /// Checks the settings beyond their JSON Schema.
    pub async fn validate(&self, invocation: &Invocation) -> Result<(), HookError> {
        self.call(invocation, async |instance, store| {
            instance.validate(store).await
        })
        .await
    }

    /// How the browser starts `request`'s login at the identity provider.
    pub async fn begin_login(
        &self,
        invocation: &Invocation,
        request: &LoginRequest,
    ) -> Result<Result<LoginStart, LoginError>, HookError> {
        let answer = self
            .call(invocation, async |instance, store| {
                instance.begin_login(store, request).await
            })
            .await?;
        self.checked(answer, check_start)
    }

    /// The identity in the identity provider's answer.
    pub async fn complete_login(
        &self,
        invocation: &Invocation,
        callback: &LoginCallback,
    ) -> Result<Result<Identity, LoginError>, HookError> {
        let answer = self
            .call(invocation, async |instance, store| {
                instance.complete_login(store, callback).await
            })
            .await?;
        self.checked(answer, check_identity)
    }

    /// The identity a directory vouches for with this username and password.
    pub async fn check_password(
        &self,
        invocation: &Invocation,
        username: &str,
        password: &str,
    ) -> Result<Result<Identity, LoginError>, HookError> {
        let answer = self
            .call(invocation, async |instance, store| {
                instance.check_password(store, username, password).await
            })
            .await?;
        self.checked(answer, check_identity)
    }

    /// One call in a fresh instance under the hook deadline.
    async fn call<T>(
        &self,
        invocation: &Invocation,
        run: impl AsyncFnOnce(
            &Provider,
            &mut Store<HostState>,
        ) -> wasmtime::Result<Result<T, PluginError>>,
    ) -> Result<T, HookError> {
        let mut store = self.core.store(invocation);
        let outcome = tokio::time::timeout(self.core.call_deadline(), async {
            let instance = self.pre.instantiate(&mut store).await?;
            run(&instance, &mut store).await
        })
        .await;
        self.core.settle(&store, outcome)
    }

    /// The answer within the limits, and the provider's refusal bounded like any output.
    fn checked<T>(
        &self,
        answer: Result<T, LoginError>,
        check: fn(&T) -> Result<(), String>,
    ) -> Result<Result<T, LoginError>, HookError> {
        match answer {
            Ok(value) => {
                check(&value).map_err(HookError::BadOutput)?;
                Ok(Ok(value))
            }
            Err(refusal) => {
                let size = match &refusal {
                    LoginError::Rejected(m)
                    | LoginError::Unavailable(m)
                    | LoginError::InvalidSettings(m) => m.len(),
                    LoginError::Unsupported => 0,
                };
                self.core.check_output(size)?;
                Ok(Err(refusal))
            }
        }
    }
}

fn text(field: &str, value: &str, min: usize, max: usize) -> Result<(), String> {
    if value.len() < min || value.len() > max {
        return Err(format!(
            "{field} must be {min} to {max} bytes, not {}",
            value.len()
        ));
    }
    if value.chars().any(char::is_control) {
        return Err(format!("{field} contains control characters"));
    }
    Ok(())
}

/// A URL the browser is sent to: https, or http on the loopback interface (a development
/// identity provider).
fn browser_url(field: &str, url: &str) -> Result<(), String> {
    text(field, url, 1, limits::URL_BYTES)?;
    let loopback = ["http://127.0.0.1", "http://localhost", "http://[::1]"]
        .iter()
        .any(|prefix| {
            url.strip_prefix(prefix)
                .is_some_and(|rest| rest.is_empty() || rest.starts_with([':', '/', '?']))
        });
    if url.starts_with("https://") || loopback {
        Ok(())
    } else {
        Err(format!(
            "{field} must be an https URL (http only on loopback)"
        ))
    }
}

fn check_start(start: &LoginStart) -> Result<(), String> {
    match &start.method {
        LoginMethod::Redirect(url) => browser_url("redirect", url)?,
        LoginMethod::Post(form) => {
            browser_url("post.action", &form.action)?;
            if form.fields.len() > limits::FORM_FIELDS {
                return Err(format!(
                    "post.fields has {} entries, more than {}",
                    form.fields.len(),
                    limits::FORM_FIELDS
                ));
            }
            let size: usize = form.fields.iter().map(|(k, v)| k.len() + v.len()).sum();
            if size > limits::FORM_BYTES {
                return Err(format!(
                    "post.fields take {size} bytes, more than {}",
                    limits::FORM_BYTES
                ));
            }
            for (name, _) in &form.fields {
                text("post.fields name", name, 1, 256)?;
            }
        }
    }
    if let Some(context) = &start.context
        && context.len() > limits::CONTEXT_BYTES
    {
        return Err(format!(
            "context must be at most {} bytes",
            limits::CONTEXT_BYTES
        ));
    }
    Ok(())
}

fn check_identity(identity: &Identity) -> Result<(), String> {
    text("subject", &identity.subject, 1, limits::SUBJECT_BYTES)?;
    text("issuer", &identity.issuer, 0, limits::ISSUER_BYTES)?;
    if let Some(email) = &identity.email {
        text("email", email, 1, limits::EMAIL_BYTES)?;
    }
    if let Some(name) = &identity.name {
        text("name", name, 0, limits::NAME_BYTES)?;
    }
    if identity.groups.len() > limits::GROUPS {
        return Err(format!(
            "groups has {} entries, more than {}",
            identity.groups.len(),
            limits::GROUPS
        ));
    }
    for group in &identity.groups {
        text("groups[]", group, 1, limits::GROUP_BYTES)?;
    }
    if identity.attributes.len() > limits::ATTRIBUTES {
        return Err(format!(
            "attributes has {} entries, more than {}",
            identity.attributes.len(),
            limits::ATTRIBUTES
        ));
    }
    for (name, value) in &identity.attributes {
        text("attributes name", name, 1, 64)?;
        text("attributes value", value, 0, limits::ATTRIBUTE_BYTES)?;
    }
    Ok(())
}

impl crate::runtime::sealed::Sealed for SsoProviderPlugin {}

impl WorldPlugin for SsoProviderPlugin {
    const WORLD: World = World::SsoProvider;

    fn from_linked(
        core: PluginCore,
        version: ContractVersion,
        pre: InstancePre<HostState>,
    ) -> wasmtime::Result<SsoProviderPlugin> {
        Ok(SsoProviderPlugin {
            core,
            pre: ProviderPre::new(version, pre)?,
        })
    }
}

/// A linked provider of some version (the world exists from 0.2.0).
#[derive(Clone)]
pub(crate) enum ProviderPre {
    V0_2_0(crate::versions::v0_2_0::sso_provider::SsoProviderPre<HostState>),
}

/// An instance of a provider of some version.
pub(crate) enum Provider {
    V0_2_0(crate::versions::v0_2_0::sso_provider::SsoProvider),
}

impl ProviderPre {
    pub(crate) fn new(
        version: ContractVersion,
        pre: InstancePre<HostState>,
    ) -> wasmtime::Result<ProviderPre> {
        match version {
            ContractVersion::V0_2_0 => Ok(ProviderPre::V0_2_0(
                crate::versions::v0_2_0::sso_provider::SsoProviderPre::new(pre)?,
            )),
            other => Err(wasmtime::format_err!(
                "contract {other} has no world sso-provider"
            )),
        }
    }

    pub(crate) async fn instantiate(
        &self,
        store: &mut Store<HostState>,
    ) -> wasmtime::Result<Provider> {
        Ok(match self {
            ProviderPre::V0_2_0(pre) => Provider::V0_2_0(pre.instantiate_async(store).await?),
        })
    }
}

impl Provider {
    pub(crate) async fn validate(
        &self,
        store: &mut Store<HostState>,
    ) -> wasmtime::Result<Result<(), PluginError>> {
        match self {
            Provider::V0_2_0(instance) => {
                crate::versions::v0_2_0::sso_validate(instance, store).await
            }
        }
    }

    pub(crate) async fn begin_login(
        &self,
        store: &mut Store<HostState>,
        request: &LoginRequest,
    ) -> wasmtime::Result<Result<Result<LoginStart, LoginError>, PluginError>> {
        match self {
            Provider::V0_2_0(instance) => {
                crate::versions::v0_2_0::sso_begin_login(instance, store, request).await
            }
        }
    }

    pub(crate) async fn complete_login(
        &self,
        store: &mut Store<HostState>,
        callback: &LoginCallback,
    ) -> wasmtime::Result<Result<Result<Identity, LoginError>, PluginError>> {
        match self {
            Provider::V0_2_0(instance) => {
                crate::versions::v0_2_0::sso_complete_login(instance, store, callback).await
            }
        }
    }

    pub(crate) async fn check_password(
        &self,
        store: &mut Store<HostState>,
        username: &str,
        password: &str,
    ) -> wasmtime::Result<Result<Result<Identity, LoginError>, PluginError>> {
        match self {
            Provider::V0_2_0(instance) => {
                crate::versions::v0_2_0::sso_check_password(instance, store, username, password)
                    .await
            }
        }
    }
}
