//! Capability `saml`: AuthnRequests signed and responses checked by the host's services for
//! the sign-in provider this call is for (the services know its service-provider keys).

use super::Capability;
use crate::contract::saml::{Assertion, AuthnRequest, RequestStart, SamlError};
use crate::runtime::HostState;

impl HostState {
    pub(crate) async fn saml_begin(
        &mut self,
        request: AuthnRequest,
    ) -> Result<RequestStart, SamlError> {
        self.grant(Capability::Saml).map_err(SamlError::Denied)?;
        self.services.saml_begin(&self.plugin_id, &request).await
    }

    pub(crate) async fn saml_validate(
        &mut self,
        idp_metadata: String,
        saml_response: String,
        request_id: String,
    ) -> Result<Assertion, SamlError> {
        self.grant(Capability::Saml).map_err(SamlError::Denied)?;
        self.services
            .saml_validate(&self.plugin_id, &idp_metadata, &saml_response, &request_id)
            .await
    }
}

#[cfg(test)]
mod tests {
    use super::super::testing::state;
    use crate::contract::saml::{AuthnRequest, SamlError};

    #[tokio::test]
    async fn saml_needs_the_grant_and_a_host_that_offers_it() {
        let request = AuthnRequest {
            idp_metadata: "<md/>".into(),
            relay_state: "s".into(),
            force_authn: false,
        };
        let (mut without, _) = state(serde_json::json!({"log": true}));
        let e = without.saml_begin(request.clone()).await.unwrap_err();
        assert!(
            matches!(&e, SamlError::Denied(t) if t.contains("saml")),
            "{e:?}"
        );
        let (mut granted, _) = state(serde_json::json!({"saml": true}));
        let e = granted.saml_begin(request).await.unwrap_err();
        assert!(
            matches!(&e, SamlError::Denied(t) if t.contains("no SAML")),
            "{e:?}"
        );
    }
}
