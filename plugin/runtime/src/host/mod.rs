//! The host side of the WIT host interfaces, one module per capability (`log`, `http`, `mail`,
//! `kv`, `config` with `secrets`, `clock`, `random`, `ldap`, `saml`): each implements its functions on
//! [`HostState`] in the version-neutral [`crate::contract`] types and asks [`HostState::grant`]
//! first — the one place a capability is checked (denied by default, each denial counted; what a
//! granted capability may then reach, such as the manifest's HTTP hosts, is its module's check) —
//! before delegating to [`crate::HostServices`]. Each contract version links these functions
//! into its worlds through thin adapters (`crate::versions`). A new capability (`saml`, `ldap`,
//! `syslog` …) is one more module here, one more [`Capability`], and one adapter per version
//! that has its interface. `jws` alone needs no capability: it is computation on what the plugin
//! hands over (signature checks, natively).

mod clock;
mod config;
mod http;
pub(crate) mod jws;
mod kv;
mod ldap;
mod log;
mod mail;
mod random;
mod saml;

use crate::runtime::HostState;

/// A capability a host function needs, named as manifests and grants name it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Capability {
    Log,
    Http,
    Mail,
    Kv,
    Config,
    Secrets,
    Clock,
    Random,
    Ldap,
    Saml,
}

impl Capability {
    fn name(self) -> &'static str {
        match self {
            Capability::Log => "log",
            Capability::Http => "http",
            Capability::Mail => "mail",
            Capability::Kv => "kv",
            Capability::Config => "config",
            Capability::Secrets => "secrets",
            Capability::Clock => "clock",
            Capability::Random => "random",
            Capability::Ldap => "ldap",
            Capability::Saml => "saml",
        }
    }
}

impl HostState {
    /// The grant check: `Err` with the reason (and a counted denial) unless the plugin's
    /// effective capabilities (manifest request ∩ operator grant) include `capability`.
    pub(crate) fn grant(&mut self, capability: Capability) -> Result<(), String> {
        let caps = &self.caps;
        let granted = match capability {
            Capability::Log => caps.log,
            Capability::Http => caps.http.is_some(),
            Capability::Mail => caps.mail,
            Capability::Kv => caps.kv,
            Capability::Config => caps.config,
            Capability::Secrets => caps.secrets,
            Capability::Clock => caps.clock,
            Capability::Random => caps.random,
            Capability::Ldap => caps.ldap.is_some(),
            Capability::Saml => caps.saml,
        };
        if granted {
            Ok(())
        } else {
            self.denials += 1;
            Err(format!(
                "capability {} was not granted to this plugin",
                capability.name()
            ))
        }
    }
}

#[cfg(test)]
pub(crate) mod testing {
    //! A [`HostState`] with chosen capabilities over recording services, for the modules' tests.

    use std::sync::{Arc, Mutex};
    use std::time::Duration;

    use async_trait::async_trait;

    use crate::Capabilities;
    use crate::contract::http::{HttpError, Request, Response};
    use crate::contract::kv::KvError;
    use crate::contract::log::Level;
    use crate::contract::mail::{MailError, Message};
    use crate::runtime::HostState;
    use crate::services::HostServices;

    #[derive(Default)]
    pub struct Recorded {
        pub logs: Mutex<Vec<String>>,
        pub mails: Mutex<Vec<Message>>,
        pub requests: Mutex<Vec<Request>>,
        pub kv: Mutex<std::collections::HashMap<String, Vec<u8>>>,
    }

    #[async_trait]
    impl HostServices for Recorded {
        fn log(&self, _plugin_id: &str, _level: Level, message: &str) {
            self.logs.lock().unwrap().push(message.to_owned());
        }

        async fn http_fetch(
            &self,
            _plugin_id: &str,
            request: Request,
            _timeout: Duration,
        ) -> Result<Response, HttpError> {
            self.requests.lock().unwrap().push(request);
            Ok(Response {
                status: 200,
                headers: Vec::new(),
                body: Vec::new(),
            })
        }

        async fn send_mail(&self, _plugin_id: &str, message: Message) -> Result<(), MailError> {
            self.mails.lock().unwrap().push(message);
            Ok(())
        }

        async fn kv_get(&self, _plugin_id: &str, key: &str) -> Result<Option<Vec<u8>>, KvError> {
            Ok(self.kv.lock().unwrap().get(key).cloned())
        }

        async fn kv_set(&self, _plugin_id: &str, key: &str, value: Vec<u8>) -> Result<(), KvError> {
            self.kv.lock().unwrap().insert(key.to_owned(), value);
            Ok(())
        }

        async fn kv_delete(&self, _plugin_id: &str, key: &str) -> Result<(), KvError> {
            self.kv.lock().unwrap().remove(key);
            Ok(())
        }

        fn now_unix_ms(&self) -> u64 {
            1_700_000_000_000
        }
    }

    /// A host state granting `caps` (JSON, the manifest's shape) over fresh recording services.
    pub fn state(caps: serde_json::Value) -> (HostState, Arc<Recorded>) {
        let caps: Capabilities = serde_json::from_value(caps).unwrap();
        let services = Arc::new(Recorded::default());
        (HostState::for_test(caps, services.clone()), services)
    }

    #[tokio::test]
    async fn the_grant_check_denies_and_counts_what_was_not_granted() {
        use super::Capability::*;
        let (mut state, _) = state(serde_json::json!({"log": true, "kv": true}));
        assert_eq!(state.grant(Log), Ok(()));
        assert_eq!(state.grant(Kv), Ok(()));
        for capability in [Http, Mail, Config, Secrets, Clock, Random, Ldap, Saml] {
            let refused = state.grant(capability).unwrap_err();
            assert!(refused.contains(capability.name()), "{refused}");
        }
        assert_eq!(state.denials, 8);
    }
}
