-- Certificates users upload for proxy hosts (tls.mode "uploaded"), per organisation. The chain
-- is public; the private key is sealed with the host's master key (purpose
-- "proxy-certificate:<id>") and opened only to be sent to a node inside a sealed command.

CREATE TABLE proxy_certificates (
    id               TEXT PRIMARY KEY,
    org_id           TEXT NOT NULL REFERENCES organizations(id),
    name             TEXT NOT NULL,
    -- JSON CertificateFacts: domains, issuer, subject, validity, fingerprint.
    facts            TEXT NOT NULL,
    certificate_pem  TEXT NOT NULL,
    sealed_key       BYTEA NOT NULL,
    created_by       TEXT NOT NULL,
    created_at       BIGINT NOT NULL,
    updated_at       BIGINT NOT NULL,
    UNIQUE (org_id, name)
);
