-- A second factor for single sign-on (issue 16): each provider says what a login through it
-- needs besides the identity provider's word: nothing more ('none'), the identity provider's own
-- report of a second factor ('idp': OIDC `amr`/`acr`, SAML's authentication context, checked
-- against `mfa_acr_values` and the built-in list), or this host's TOTP ('local': asked after the
-- identity provider, enrolled then by a person who has none).
ALTER TABLE sso_providers ADD COLUMN mfa TEXT NOT NULL DEFAULT 'none'
    CHECK (mfa IN ('none', 'idp', 'local'));
ALTER TABLE sso_providers ADD COLUMN mfa_acr_values TEXT NOT NULL DEFAULT '[]';

-- A second step after a single sign-on login remembers the provider whose session it opens,
-- and whether it enrols the person's first authenticator (with the fingerprint of the pending
-- seed it was issued with: a seed set since, by another sign-in or the profile, does not confirm it).
ALTER TABLE mfa_challenges ADD COLUMN sso_org_id TEXT;
ALTER TABLE mfa_challenges ADD COLUMN sso_provider_id TEXT;
ALTER TABLE mfa_challenges ADD COLUMN enrolling INTEGER NOT NULL DEFAULT 0;
ALTER TABLE mfa_challenges ADD COLUMN seed_fingerprint TEXT;

-- Whether the identity provider reported a second factor for a login, recorded when its callback
-- succeeds: a policy tightened to 'idp' before the code is exchanged still applies to it.
ALTER TABLE sso_logins ADD COLUMN second_factor INTEGER NOT NULL DEFAULT 0;
