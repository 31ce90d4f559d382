//! Identity primitives for the InfraPilot host: roles, password hashing, opaque tokens, TOTP,
//! backup codes, secret sealing and login throttling. No I/O and no database here: the API
//! crate combines these with the store.

mod secrets;
mod throttle;
mod totp;

use argon2::Argon2;
use argon2::password_hash::phc::PasswordHash;
use argon2::password_hash::{PasswordHasher, PasswordVerifier};
use base64::Engine;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

pub use secrets::{SecretBox, SecretError};
pub use throttle::{LoginThrottle, ThrottleDecision};
pub use totp::{TotpEnrollment, TotpError, backup_code_hash, generate_backup_codes, verify_totp};

#[derive(Debug, thiserror::Error)]
pub enum IdentityError {
    #[error("password hashing failed: {0}")]
    Hashing(String),
    #[error("the system random source failed")]
    Random,
}

/// The roles of a membership, from least to most privileged.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    PartialOrd,
    Ord,
    Hash,
    Serialize,
    Deserialize,
    utoipa::ToSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    Viewer,
    Operator,
    Admin,
    SuperAdmin,
}

impl Role {
    pub const ALL: [Role; 4] = [Role::Viewer, Role::Operator, Role::Admin, Role::SuperAdmin];

    pub fn as_str(self) -> &'static str {
        match self {
            Role::Viewer => "viewer",
            Role::Operator => "operator",
            Role::Admin => "admin",
            Role::SuperAdmin => "super_admin",
        }
    }

    pub fn parse(s: &str) -> Option<Role> {
        Role::ALL.into_iter().find(|r| r.as_str() == s)
    }

    /// Whether this role grants at least `required`.
    pub fn at_least(self, required: Role) -> bool {
        self >= required
    }
}

impl std::fmt::Display for Role {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Shortest and longest passwords accepted.
pub const PASSWORD_MIN_CHARS: usize = 10;
pub const PASSWORD_MAX_CHARS: usize = 256;

/// Why a new password is refused, or `None` when it is acceptable.
pub fn password_problem(password: &str) -> Option<String> {
    let n = password.chars().count();
    if n < PASSWORD_MIN_CHARS {
        return Some(format!("must be at least {PASSWORD_MIN_CHARS} characters"));
    }
    if n > PASSWORD_MAX_CHARS {
        return Some(format!("must be at most {PASSWORD_MAX_CHARS} characters"));
    }
    if password.trim().is_empty() {
        return Some("must not be only whitespace".into());
    }
    None
}

/// Hashes a password with Argon2id (PHC string, random salt).
pub fn hash_password(password: &str) -> Result<String, IdentityError> {
    Argon2::default()
        .hash_password(password.as_bytes())
        .map(|h| h.to_string())
        .map_err(|e| IdentityError::Hashing(e.to_string()))
}

/// Checks a password against a stored PHC string; false for any malformed hash.
pub fn verify_password(stored_hash: &str, password: &str) -> bool {
    match PasswordHash::new(stored_hash) {
        Ok(parsed) => Argon2::default()
            .verify_password(password.as_bytes(), &parsed)
            .is_ok(),
        Err(_) => false,
    }
}

/// A hash to compare against when the account does not exist, so that timing does not reveal it.
pub fn dummy_password_hash() -> &'static str {
    static DUMMY: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    DUMMY.get_or_init(|| hash_password("not-a-real-password-0000").unwrap_or_default())
}

/// Random bytes from the operating system.
pub fn random_bytes<const N: usize>() -> Result<[u8; N], IdentityError> {
    let mut buf = [0u8; N];
    getrandom::fill(&mut buf).map_err(|_| IdentityError::Random)?;
    Ok(buf)
}

/// The kinds of opaque bearer secrets the host hands out, with their visible prefixes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenKind {
    Access,
    Refresh,
    Api,
    MfaChallenge,
    Enrollment,
    Invitation,
    EmailVerification,
}

impl TokenKind {
    pub fn prefix(self) -> &'static str {
        match self {
            TokenKind::Access => "ipa_",
            TokenKind::Refresh => "ipr_",
            TokenKind::Api => "ipt_",
            TokenKind::MfaChallenge => "ipm_",
            TokenKind::Enrollment => "ipe_",
            TokenKind::Invitation => "ipi_",
            TokenKind::EmailVerification => "ipv_",
        }
    }
}

/// A freshly generated secret and the hash under which it is stored.
pub struct IssuedToken {
    pub secret: String,
    pub hash: String,
}

/// Generates a 256-bit random bearer secret; only its SHA-256 is ever stored.
pub fn issue_token(kind: TokenKind) -> Result<IssuedToken, IdentityError> {
    let bytes = random_bytes::<32>()?;
    let secret = format!(
        "{}{}",
        kind.prefix(),
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
    );
    let hash = hash_token(&secret);
    Ok(IssuedToken { secret, hash })
}

/// The stored form of a bearer secret. The secrets carry 256 bits of entropy, so a fast hash suffices.
pub fn hash_token(secret: &str) -> String {
    hex::encode(Sha256::digest(secret.as_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roles_are_ordered() {
        assert!(Role::SuperAdmin.at_least(Role::Admin));
        assert!(Role::Admin.at_least(Role::Operator));
        assert!(!Role::Viewer.at_least(Role::Operator));
        for r in Role::ALL {
            assert_eq!(Role::parse(r.as_str()), Some(r));
        }
        assert_eq!(Role::parse("root"), None);
    }

    #[test]
    fn password_round_trip() {
        let h = hash_password("correct horse battery").unwrap();
        assert!(h.starts_with("$argon2id$"));
        assert!(verify_password(&h, "correct horse battery"));
        assert!(!verify_password(&h, "correct horse battery!"));
        assert!(!verify_password("garbage", "x"));
    }

    #[test]
    fn password_policy() {
        assert!(password_problem("short").is_some());
        assert!(password_problem("          ").is_some());
        assert!(password_problem(&"x".repeat(300)).is_some());
        assert!(password_problem("long enough pass").is_none());
    }

    #[test]
    fn tokens_are_unique_and_hashed() {
        let a = issue_token(TokenKind::Access).unwrap();
        let b = issue_token(TokenKind::Access).unwrap();
        assert_ne!(a.secret, b.secret);
        assert!(a.secret.starts_with("ipa_"));
        assert_eq!(hash_token(&a.secret), a.hash);
        assert_eq!(a.hash.len(), 64);
    }
}
