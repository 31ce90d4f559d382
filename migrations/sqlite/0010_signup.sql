-- Sign-up (issue 15, SaaS edition): a person who signed up proves their email with a mailed link
-- before they can sign in. Existing accounts count as verified.
ALTER TABLE users ADD COLUMN email_verified BOOLEAN NOT NULL DEFAULT TRUE;

-- Personal (no org_id): the link's token, stored hashed, single use.
CREATE TABLE email_verifications (
    token_hash  TEXT PRIMARY KEY,
    user_id     TEXT NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    expires_at  INTEGER NOT NULL,
    used_at     INTEGER
);
CREATE INDEX email_verifications_user ON email_verifications (user_id);
