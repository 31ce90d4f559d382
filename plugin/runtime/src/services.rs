//! What host functions delegate to once the capability check passed. The host implements this
//! with real HTTP (see [`crate::egress`]), LDAP (see [`crate::directory`]), SMTP and its store; tests with a recording fake.

use std::time::Duration;

use async_trait::async_trait;

use crate::contract::http::{HttpError, Request, Response};
use crate::contract::kv::KvError;
use crate::contract::ldap::{Credentials, Entry, LdapError, SearchRequest, Server};
use crate::contract::log::Level;
use crate::contract::mail::{MailError, Message};
use crate::contract::saml::{Assertion, AuthnRequest, RequestStart, SamlError};

/// Host services for one plugin call. `plugin_id` identifies the caller (key/value namespaces,
/// log attribution).
#[async_trait]
pub trait HostServices: Send + Sync {
    fn log(&self, plugin_id: &str, level: Level, message: &str);

    /// One HTTP exchange, no redirects followed (the runtime follows them after checking each
    /// target against the plugin's hosts). Must refuse forbidden addresses at dial time and give
    /// up after `timeout`.
    async fn http_fetch(
        &self,
        plugin_id: &str,
        request: Request,
        timeout: Duration,
    ) -> Result<Response, HttpError>;

    async fn send_mail(&self, plugin_id: &str, message: Message) -> Result<(), MailError>;

    async fn kv_get(&self, plugin_id: &str, key: &str) -> Result<Option<Vec<u8>>, KvError>;
    async fn kv_set(&self, plugin_id: &str, key: &str, value: Vec<u8>) -> Result<(), KvError>;
    async fn kv_delete(&self, plugin_id: &str, key: &str) -> Result<(), KvError>;

    /// A directory bind (the capability and the destination's host were checked). Hosts
    /// without directory access keep the default: denied.
    async fn ldap_bind(
        &self,
        _plugin_id: &str,
        _server: &Server,
        _credentials: &Credentials,
        _timeout: Duration,
    ) -> Result<(), LdapError> {
        Err(LdapError::Denied(
            "this host offers no directory access".into(),
        ))
    }

    /// A directory bind and search (see [`HostServices::ldap_bind`]).
    async fn ldap_search(
        &self,
        _plugin_id: &str,
        _server: &Server,
        _credentials: &Credentials,
        _request: &SearchRequest,
        _timeout: Duration,
    ) -> Result<Vec<Entry>, LdapError> {
        Err(LdapError::Denied(
            "this host offers no directory access".into(),
        ))
    }

    /// A signed AuthnRequest for the sign-in provider this call is for. Hosts (or calls)
    /// without a SAML service provider keep the default: denied.
    async fn saml_begin(
        &self,
        _plugin_id: &str,
        _request: &AuthnRequest,
    ) -> Result<RequestStart, SamlError> {
        Err(SamlError::Denied(
            "no SAML service provider is set up for this call".into(),
        ))
    }

    /// Checks a response for the sign-in provider this call is for (see
    /// [`HostServices::saml_begin`]).
    async fn saml_validate(
        &self,
        _plugin_id: &str,
        _idp_metadata: &str,
        _saml_response: &str,
        _request_id: &str,
    ) -> Result<Assertion, SamlError> {
        Err(SamlError::Denied(
            "no SAML service provider is set up for this call".into(),
        ))
    }

    fn now_unix_ms(&self) -> u64 {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_millis() as u64)
            .unwrap_or(0)
    }
}

/// Host services without a store: real outbound HTTP, an in-memory key/value map, tracing for
/// logs and no mail. Used by tests and tools; the host wires its own store and SMTP settings.
pub struct BasicServices {
    http: crate::egress::HttpEgress,
    directory: crate::directory::DirectoryEgress,
    kv: std::sync::Mutex<std::collections::HashMap<(String, String), Vec<u8>>>,
}

/// Keys one plugin may keep.
pub const MAX_KV_KEYS: usize = 1000;

impl BasicServices {
    pub fn new(http: crate::egress::HttpEgress) -> BasicServices {
        BasicServices {
            directory: crate::directory::DirectoryEgress::new(http.guard().clone()),
            http,
            kv: std::sync::Mutex::default(),
        }
    }
}

#[async_trait]
impl HostServices for BasicServices {
    fn log(&self, plugin_id: &str, level: Level, message: &str) {
        match level {
            Level::Error => tracing::error!(plugin = plugin_id, "{message}"),
            Level::Warn => tracing::warn!(plugin = plugin_id, "{message}"),
            Level::Info => tracing::info!(plugin = plugin_id, "{message}"),
            Level::Debug => tracing::debug!(plugin = plugin_id, "{message}"),
            Level::Trace => tracing::trace!(plugin = plugin_id, "{message}"),
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

    async fn send_mail(&self, _plugin_id: &str, _message: Message) -> Result<(), MailError> {
        Err(MailError::NotConfigured)
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

    async fn kv_get(&self, plugin_id: &str, key: &str) -> Result<Option<Vec<u8>>, KvError> {
        let map = self
            .kv
            .lock()
            .map_err(|_| KvError::Storage("poisoned".into()))?;
        Ok(map.get(&(plugin_id.to_owned(), key.to_owned())).cloned())
    }

    async fn kv_set(&self, plugin_id: &str, key: &str, value: Vec<u8>) -> Result<(), KvError> {
        let mut map = self
            .kv
            .lock()
            .map_err(|_| KvError::Storage("poisoned".into()))?;
        let entry = (plugin_id.to_owned(), key.to_owned());
        if !map.contains_key(&entry)
            && map.keys().filter(|(p, _)| p == plugin_id).count() >= MAX_KV_KEYS
        {
            return Err(KvError::TooLarge);
        }
        map.insert(entry, value);
        Ok(())
    }

    async fn kv_delete(&self, plugin_id: &str, key: &str) -> Result<(), KvError> {
        let mut map = self
            .kv
            .lock()
            .map_err(|_| KvError::Storage("poisoned".into()))?;
        map.remove(&(plugin_id.to_owned(), key.to_owned()));
        Ok(())
    }
}
