//! [`HostServices`] as the host provides them: the guarded outbound HTTP and LDAP, SAML for a
//! sign-in provider's calls (`infrapilot-saml`), mail through the
//! host's SMTP settings, and key/value data in the store, scoped to the organisation whose
//! instance runs and to the plugin.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use infrapilot_plugin_runtime::HostServices;
use infrapilot_plugin_runtime::contract::http::{HttpError, Request, Response};
use infrapilot_plugin_runtime::contract::kv::KvError;
use infrapilot_plugin_runtime::contract::ldap::{
    Credentials, Entry, LdapError, SearchRequest, Server,
};
use infrapilot_plugin_runtime::contract::log::Level;
use infrapilot_plugin_runtime::contract::mail::{MailError, Message};
use infrapilot_plugin_runtime::contract::saml::{Assertion, AuthnRequest, RequestStart, SamlError};
use infrapilot_plugin_runtime::directory::DirectoryEgress;
use infrapilot_plugin_runtime::egress::HttpEgress;
use infrapilot_store::Store;

use crate::mailer::Mailer;

pub struct StoreServices {
    pub(crate) org_id: infrapilot_store::OrgId,
    pub(crate) store: Store,
    pub(crate) http: Arc<HttpEgress>,
    pub(crate) directory: DirectoryEgress,
    /// The sign-in provider's SAML service provider, for calls made for one.
    pub(crate) saml: Option<(
        infrapilot_saml::ServiceProvider,
        Arc<infrapilot_saml::ReplayCache>,
    )>,
    pub(crate) mailer: Option<Mailer>,
}

/// How long one SAML operation may take.
const SAML_TIME_LIMIT: Duration = Duration::from_secs(5);

fn no_service_provider() -> SamlError {
    SamlError::Denied("this call is not a SAML sign-in provider's".into())
}

fn saml_error(e: infrapilot_saml::SamlError) -> SamlError {
    match e {
        infrapilot_saml::SamlError::InvalidMetadata(m) => SamlError::InvalidMetadata(m),
        infrapilot_saml::SamlError::Rejected(m) => SamlError::Rejected(m),
        infrapilot_saml::SamlError::Internal(m) => {
            tracing::error!(error = %m, "SAML on this host failed");
            SamlError::Rejected("the host could not do SAML; see its log".into())
        }
    }
}

fn storage(e: infrapilot_store::StoreError) -> KvError {
    tracing::error!(error = %e, "plugin key/value storage failed");
    KvError::Storage("the host could not reach its database".into())
}

#[async_trait]
impl HostServices for StoreServices {
    fn log(&self, plugin_id: &str, level: Level, message: &str) {
        let org = self.org_id.as_str();
        match level {
            Level::Error => tracing::error!(plugin = plugin_id, org, "{message}"),
            Level::Warn => tracing::warn!(plugin = plugin_id, org, "{message}"),
            Level::Info => tracing::info!(plugin = plugin_id, org, "{message}"),
            Level::Debug => tracing::debug!(plugin = plugin_id, org, "{message}"),
            Level::Trace => tracing::trace!(plugin = plugin_id, org, "{message}"),
        }
    }

    async fn http_fetch(
        &self,
        _plugin_id: &str,
        request: Request,
        timeout: Duration,
    ) -> Result<Response, HttpError> {
        self.http.fetch(request, timeout).await
    }

    async fn ldap_bind(
        &self,
        _plugin_id: &str,
        server: &Server,
        credentials: &Credentials,
        timeout: Duration,
    ) -> Result<(), LdapError> {
        self.directory.bind(server, credentials, timeout).await
    }

    async fn ldap_search(
        &self,
        _plugin_id: &str,
        server: &Server,
        credentials: &Credentials,
        request: &SearchRequest,
        timeout: Duration,
    ) -> Result<Vec<Entry>, LdapError> {
        self.directory
            .search(server, credentials, request, timeout)
            .await
    }

    async fn saml_begin(
        &self,
        _plugin_id: &str,
        request: &AuthnRequest,
    ) -> Result<RequestStart, SamlError> {
        let (sp, _) = self.saml.clone().ok_or_else(no_service_provider)?;
        let request = request.clone();
        let work = tokio::task::spawn_blocking(move || {
            infrapilot_saml::begin(
                &sp,
                &request.idp_metadata,
                &request.relay_state,
                request.force_authn,
            )
        });
        let start = tokio::time::timeout(SAML_TIME_LIMIT, work)
            .await
            .map_err(|_| SamlError::Rejected("signing the request took too long".into()))?
            .map_err(|e| SamlError::Rejected(format!("signing the request failed: {e}")))?
            .map_err(saml_error)?;
        Ok(RequestStart {
            redirect_url: start.redirect_url,
            request_id: start.request_id,
        })
    }

    async fn saml_validate(
        &self,
        _plugin_id: &str,
        idp_metadata: &str,
        saml_response: &str,
        request_id: &str,
    ) -> Result<Assertion, SamlError> {
        let (sp, replay) = self.saml.clone().ok_or_else(no_service_provider)?;
        let (idp_metadata, saml_response, request_id) = (
            idp_metadata.to_owned(),
            saml_response.to_owned(),
            request_id.to_owned(),
        );
        // XML signature work off the async workers, and bounded in time.
        let work = tokio::task::spawn_blocking(move || {
            infrapilot_saml::validate(&sp, &idp_metadata, &saml_response, &request_id, &replay)
        });
        let facts = tokio::time::timeout(SAML_TIME_LIMIT, work)
            .await
            .map_err(|_| SamlError::Rejected("checking the response took too long".into()))?
            .map_err(|e| SamlError::Rejected(format!("checking the response failed: {e}")))?
            .map_err(saml_error)?;
        Ok(Assertion {
            issuer: facts.issuer,
            name_id: facts.name_id,
            name_id_format: facts.name_id_format,
            session_index: facts.session_index,
            authn_context: facts.authn_context,
            attributes: facts.attributes,
        })
    }

    async fn send_mail(&self, _plugin_id: &str, message: Message) -> Result<(), MailError> {
        match &self.mailer {
            None => Err(MailError::NotConfigured),
            Some(m) => m.send(message).await,
        }
    }

    async fn kv_get(&self, plugin_id: &str, key: &str) -> Result<Option<Vec<u8>>, KvError> {
        let mut tx = self.store.read(&self.org_id).await.map_err(storage)?;
        tx.plugin_kv_get(plugin_id, key).await.map_err(storage)
    }

    async fn kv_set(&self, plugin_id: &str, key: &str, value: Vec<u8>) -> Result<(), KvError> {
        let mut tx = self.store.write(&self.org_id).await.map_err(storage)?;
        if !tx
            .plugin_kv_set(plugin_id, key, &value)
            .await
            .map_err(storage)?
        {
            return Err(KvError::TooLarge);
        }
        tx.commit().await.map_err(storage)
    }

    async fn kv_delete(&self, plugin_id: &str, key: &str) -> Result<(), KvError> {
        let mut tx = self.store.write(&self.org_id).await.map_err(storage)?;
        tx.plugin_kv_delete(plugin_id, key).await.map_err(storage)?;
        tx.commit().await.map_err(storage)
    }
}
