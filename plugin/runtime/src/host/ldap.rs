//! Capability `ldap`: directory binds and searches to the manifest's LDAP hosts only, within
//! the hook's deadline and the host's HTTP time limit (the address rule and escaping are
//! [`crate::directory`]'s).

use std::time::Duration;

use super::Capability;
use crate::contract::ldap::{Credentials, Entry, LdapError, SearchRequest, Server};
use crate::directory::Destination;
use crate::runtime::HostState;

impl HostState {
    /// The grant, the server's host among the manifest's, and the time this call may take.
    fn ldap_checks(&mut self, server: &Server) -> Result<Duration, LdapError> {
        self.grant(Capability::Ldap).map_err(LdapError::Denied)?;
        let destination = Destination::parse(&server.url)?;
        if !self.caps.allows_ldap_host(destination.host()) {
            self.denials += 1;
            return Err(LdapError::Denied(format!(
                "{} is not among the directory hosts this plugin may reach",
                destination.host()
            )));
        }
        let remaining = self
            .deadline
            .saturating_duration_since(std::time::Instant::now());
        if remaining.is_zero() {
            return Err(LdapError::Timeout);
        }
        let asked = server
            .timeout_ms
            .map(|ms| Duration::from_millis(u64::from(ms)))
            .unwrap_or(self.limits.http_timeout);
        Ok(asked.min(self.limits.http_timeout).min(remaining))
    }

    pub(crate) async fn ldap_bind(
        &mut self,
        server: Server,
        credentials: Credentials,
    ) -> Result<(), LdapError> {
        let timeout = self.ldap_checks(&server)?;
        self.services
            .ldap_bind(&self.plugin_id, &server, &credentials, timeout)
            .await
    }

    pub(crate) async fn ldap_search(
        &mut self,
        server: Server,
        credentials: Credentials,
        request: SearchRequest,
    ) -> Result<Vec<Entry>, LdapError> {
        let timeout = self.ldap_checks(&server)?;
        self.services
            .ldap_search(&self.plugin_id, &server, &credentials, &request, timeout)
            .await
    }
}

#[cfg(test)]
mod tests {
    use super::super::testing::state;
    use crate::contract::ldap::{Credentials, LdapError, Server};

    fn server(url: &str) -> Server {
        Server {
            url: url.into(),
            ca_pem: None,
            timeout_ms: None,
        }
    }

    fn alice() -> Credentials {
        Credentials {
            dn: "uid=alice".into(),
            password: "pw".into(),
        }
    }

    #[tokio::test]
    async fn directory_access_needs_the_grant_and_a_listed_host() {
        let (mut without, _) = state(serde_json::json!({"http": {"hosts": ["*"]}}));
        let e = without
            .ldap_bind(server("ldaps://dir.example.com"), alice())
            .await
            .unwrap_err();
        assert!(
            matches!(&e, LdapError::Denied(t) if t.contains("ldap")),
            "{e:?}"
        );

        let (mut state, _) = state(serde_json::json!({"ldap": {"hosts": ["dir.example.com"]}}));
        let e = state
            .ldap_bind(server("ldaps://other.example.com"), alice())
            .await
            .unwrap_err();
        assert!(
            matches!(&e, LdapError::Denied(t) if t.contains("other.example.com")),
            "{e:?}"
        );
        assert_eq!(state.denials, 1);
        // A listed host reaches the services (the recording fake offers no directory).
        let e = state
            .ldap_bind(server("ldaps://DIR.example.com:1636"), alice())
            .await
            .unwrap_err();
        assert!(
            matches!(&e, LdapError::Denied(t) if t.contains("no directory")),
            "{e:?}"
        );
        let e = state
            .ldap_bind(server("http://dir.example.com"), alice())
            .await
            .unwrap_err();
        assert!(matches!(e, LdapError::InvalidRequest(_)), "{e:?}");
    }
}
