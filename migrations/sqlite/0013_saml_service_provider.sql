-- SAML (issue 16): a sign-in provider whose plugin uses the host's `saml` capability has its own
-- service-provider key (sealed under the master key) and self-signed certificate, made by the
-- host when the provider is created; the identity provider trusts that certificate for the
-- provider's signed AuthnRequests. Never returned by the API; the certificate is in the
-- provider's public SAML metadata. Its entity id and ACS URL are fixed when it is made (never
-- taken from a request's Host header afterwards: the audience and recipient every response is
-- checked against).

ALTER TABLE sso_providers ADD COLUMN sp_key BLOB;
ALTER TABLE sso_providers ADD COLUMN sp_cert TEXT;
ALTER TABLE sso_providers ADD COLUMN sp_entity_id TEXT;
ALTER TABLE sso_providers ADD COLUMN sp_acs_url TEXT;
