//! Sealing secrets at rest (TOTP seeds now; channel credentials and SSO secrets later) with
//! AES-256-GCM under the host's master key.

use aws_lc_rs::aead::{AES_256_GCM, Aad, LessSafeKey, NONCE_LEN, Nonce, UnboundKey};

use crate::random_bytes;

#[derive(Debug, thiserror::Error)]
pub enum SecretError {
    #[error("the master key must be 32 bytes")]
    KeyLength,
    #[error("sealed secret is corrupt or was sealed under another key")]
    Open,
    #[error("sealing failed")]
    Seal,
}

/// Format byte of sealed values, so the scheme can change later.
const VERSION: u8 = 1;

/// Seals and opens secrets. The purpose string is bound in as associated data, so a value sealed
/// for one purpose (say, a TOTP seed) cannot be passed off as another.
pub struct SecretBox {
    key: LessSafeKey,
}

impl SecretBox {
    pub fn new(master_key: &[u8]) -> Result<SecretBox, SecretError> {
        let key = UnboundKey::new(&AES_256_GCM, master_key).map_err(|_| SecretError::KeyLength)?;
        Ok(SecretBox {
            key: LessSafeKey::new(key),
        })
    }

    /// `version || nonce || ciphertext+tag`
    pub fn seal(&self, purpose: &str, plaintext: &[u8]) -> Result<Vec<u8>, SecretError> {
        let nonce_bytes = random_bytes::<NONCE_LEN>().map_err(|_| SecretError::Seal)?;
        let mut buf = plaintext.to_vec();
        self.key
            .seal_in_place_append_tag(
                Nonce::assume_unique_for_key(nonce_bytes),
                Aad::from(purpose.as_bytes()),
                &mut buf,
            )
            .map_err(|_| SecretError::Seal)?;
        let mut out = Vec::with_capacity(1 + NONCE_LEN + buf.len());
        out.push(VERSION);
        out.extend_from_slice(&nonce_bytes);
        out.extend_from_slice(&buf);
        Ok(out)
    }

    pub fn open(&self, purpose: &str, sealed: &[u8]) -> Result<Vec<u8>, SecretError> {
        if sealed.len() < 1 + NONCE_LEN || sealed[0] != VERSION {
            return Err(SecretError::Open);
        }
        let nonce = Nonce::try_assume_unique_for_key(&sealed[1..1 + NONCE_LEN])
            .map_err(|_| SecretError::Open)?;
        let mut buf = sealed[1 + NONCE_LEN..].to_vec();
        let plain = self
            .key
            .open_in_place(nonce, Aad::from(purpose.as_bytes()), &mut buf)
            .map_err(|_| SecretError::Open)?;
        Ok(plain.to_vec())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_tamper() {
        let b = SecretBox::new(&[7u8; 32]).unwrap();
        let sealed = b.seal("totp", b"seed").unwrap();
        assert_ne!(&sealed[13..], b"seed");
        assert_eq!(b.open("totp", &sealed).unwrap(), b"seed");
        assert!(b.open("smtp", &sealed).is_err(), "purpose is bound");
        let mut bad = sealed.clone();
        *bad.last_mut().unwrap() ^= 1;
        assert!(b.open("totp", &bad).is_err());
        let other = SecretBox::new(&[8u8; 32]).unwrap();
        assert!(other.open("totp", &sealed).is_err());
        assert!(SecretBox::new(&[1u8; 16]).is_err());
    }
}
