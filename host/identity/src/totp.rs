//! TOTP (RFC 6238: SHA-1, 6 digits, 30 s steps — what every authenticator app speaks) and
//! one-time backup codes.

use base64::Engine;
use totp_rs::{Algorithm, Builder, Totp};

use crate::{IdentityError, hash_token, random_bytes};

#[derive(Debug, thiserror::Error)]
pub enum TotpError {
    #[error("invalid TOTP parameters: {0}")]
    Build(String),
    #[error("QR code could not be rendered")]
    Qr,
}

const ISSUER: &str = "InfraPilot";
const STEP_SECONDS: u64 = 30;

fn build(secret: &[u8], account: &str) -> Result<Totp, TotpError> {
    Builder::new()
        .with_algorithm(Algorithm::SHA1)
        .with_digits(6)
        .with_step_duration(STEP_SECONDS)
        .with_skew(1)
        .with_secret(secret.to_vec())
        .with_account_name(account)
        .with_issuer(Some(ISSUER))
        .build()
        .map_err(|e| TotpError::Build(format!("{e:?}")))
}

/// What a user needs to add InfraPilot to an authenticator app.
pub struct TotpEnrollment {
    pub secret: Vec<u8>,
    pub secret_base32: String,
    pub otpauth_uri: String,
    /// The URI as a QR code, an SVG document.
    pub qr_svg: String,
    /// The same SVG as a `data:` URL for an `<img>`.
    pub qr_data_url: String,
}

impl std::fmt::Debug for TotpEnrollment {
    /// Never the seed.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TotpEnrollment").finish_non_exhaustive()
    }
}

impl TotpEnrollment {
    /// A new random 160-bit seed for `account` (the user's email).
    pub fn generate(account: &str) -> Result<TotpEnrollment, TotpError> {
        let secret = random_bytes::<20>()
            .map_err(|e: IdentityError| TotpError::Build(e.to_string()))?
            .to_vec();
        let totp = build(&secret, account)?;
        let otpauth_uri = totp
            .to_url()
            .map_err(|e| TotpError::Build(format!("{e:?}")))?;
        let code = qrcode::QrCode::new(otpauth_uri.as_bytes()).map_err(|_| TotpError::Qr)?;
        let qr_svg = code
            .render::<qrcode::render::svg::Color<'_>>()
            .min_dimensions(200, 200)
            .build();
        let qr_data_url = format!(
            "data:image/svg+xml;base64,{}",
            base64::engine::general_purpose::STANDARD.encode(qr_svg.as_bytes())
        );
        Ok(TotpEnrollment {
            secret_base32: totp.secret().to_base32(),
            secret,
            otpauth_uri,
            qr_svg,
            qr_data_url,
        })
    }
}

/// Checks a 6-digit code at `unix_seconds` (±1 step). Returns the time step it matched, or
/// `None`. A step at or before `last_used_step` is refused, so a code cannot be replayed.
pub fn verify_totp(
    secret: &[u8],
    code: &str,
    unix_seconds: u64,
    last_used_step: Option<i64>,
) -> Option<i64> {
    let code = code.trim();
    if code.len() != 6 || !code.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let totp = build(secret, "check").ok()?;
    let current = (unix_seconds / STEP_SECONDS) as i64;
    // Check each step in the window ourselves so that we know which one matched.
    for step in [current - 1, current, current + 1] {
        if step < 0 || last_used_step.is_some_and(|last| step <= last) {
            continue;
        }
        let at = step as u64 * STEP_SECONDS;
        if constant_time_eq(totp.generate(at).to_string().as_bytes(), code.as_bytes()) {
            return Some(step);
        }
    }
    None
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// Ten backup codes like `k7q2-9xmf`, and their stored hashes.
pub fn generate_backup_codes() -> Result<(Vec<String>, Vec<String>), IdentityError> {
    const ALPHABET: &[u8] = b"abcdefghjkmnpqrstuvwxyz23456789";
    let mut codes = Vec::with_capacity(10);
    for _ in 0..10 {
        let bytes = random_bytes::<8>()?;
        let chars: String = bytes
            .iter()
            .map(|b| ALPHABET[*b as usize % ALPHABET.len()] as char)
            .collect();
        codes.push(format!("{}-{}", &chars[..4], &chars[4..]));
    }
    let hashes = codes.iter().map(|c| backup_code_hash(c)).collect();
    Ok((codes, hashes))
}

/// The stored form of a backup code (case and dashes ignored on entry).
pub fn backup_code_hash(code: &str) -> String {
    let normalised: String = code
        .chars()
        .filter(|c| c.is_ascii_alphanumeric())
        .map(|c| c.to_ascii_lowercase())
        .collect();
    hash_token(&format!("backup:{normalised}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc6238_vector() {
        // RFC 6238 appendix B, SHA-1 seed "12345678901234567890", T = 59 s → 94287082 (8 digits);
        // the 6-digit code is its last six digits.
        let secret = b"12345678901234567890";
        assert_eq!(verify_totp(secret, "287082", 59, None), Some(1));
        assert_eq!(
            verify_totp(secret, "287082", 59, Some(1)),
            None,
            "replay refused"
        );
        assert_eq!(verify_totp(secret, "287083", 59, None), None);
        assert_eq!(verify_totp(secret, "28708", 59, None), None);
        assert_eq!(verify_totp(secret, "abcdef", 59, None), None);
    }

    #[test]
    fn enrollment_uri_and_qr() {
        let e = TotpEnrollment::generate("a@example.com").unwrap();
        assert!(
            e.otpauth_uri
                .starts_with("otpauth://totp/InfraPilot:a%40example.com?")
        );
        assert!(
            e.otpauth_uri
                .contains(&format!("secret={}", e.secret_base32))
        );
        assert!(e.qr_svg.contains("<svg"));
        assert_eq!(e.secret.len(), 20);
    }

    #[test]
    fn backup_codes() {
        let (codes, hashes) = generate_backup_codes().unwrap();
        assert_eq!(codes.len(), 10);
        assert_eq!(hashes[0], backup_code_hash(&codes[0].to_uppercase()));
        assert_eq!(hashes[0], backup_code_hash(&codes[0].replace('-', "")));
        let unique: std::collections::HashSet<_> = codes.iter().collect();
        assert_eq!(unique.len(), 10);
    }
}
