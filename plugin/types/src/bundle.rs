//! Plugin bundles: `manifest.json` + `plugin.wasm` + `signature.json` in one tar file.
//!
//! The signature is Ed25519 over
//! `"infrapilot-plugin-bundle/v1\n" + hex(sha256(manifest.json)) + "\n" + hex(sha256(plugin.wasm)) + "\n"`,
//! so changing a byte of either file breaks it. A bundle is accepted when the signing key is
//! among the operator's trusted publisher keys, or, with the development switch on, unsigned
//! (it is then listed with `signed: false`).

use std::io::Read;
use std::path::Path;

use base64::Engine as _;
use ed25519_dalek::Signer;
use ed25519_dalek::pkcs8::spki::der::pem::LineEnding;
use ed25519_dalek::pkcs8::{DecodePrivateKey, DecodePublicKey, EncodePrivateKey, EncodePublicKey};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::manifest::{Manifest, ManifestError};

/// Largest bundle accepted (component plus manifest).
pub const MAX_BUNDLE_BYTES: u64 = 32 << 20;
const MANIFEST: &str = "manifest.json";
const COMPONENT: &str = "plugin.wasm";
const SIGNATURE: &str = "signature.json";

#[derive(Debug, thiserror::Error)]
pub enum BundleError {
    #[error("bundle: {0}")]
    Format(String),
    #[error(transparent)]
    Manifest(#[from] ManifestError),
    #[error("bundle is not signed (turn on the development switch to install unsigned plugins)")]
    Unsigned,
    #[error("bundle signature does not match its contents (tampered, or signed over other files)")]
    BadSignature,
    #[error("bundle is signed by a key that is not trusted ({0})")]
    UntrustedKey(String),
    #[error("key: {0}")]
    Key(String),
}

#[derive(Serialize, Deserialize)]
struct SignatureFile {
    algorithm: String,
    /// Raw 32-byte Ed25519 public key, base64.
    public_key: String,
    signature: String,
}

/// An Ed25519 private key (PKCS#8 PEM on disk).
pub struct SigningKey(ed25519_dalek::SigningKey);

impl SigningKey {
    pub fn generate() -> Result<SigningKey, BundleError> {
        let mut seed = [0u8; 32];
        getrandom::fill(&mut seed).map_err(|e| BundleError::Key(e.to_string()))?;
        Ok(SigningKey(ed25519_dalek::SigningKey::from_bytes(&seed)))
    }

    pub fn from_pem(pem: &str) -> Result<SigningKey, BundleError> {
        ed25519_dalek::SigningKey::from_pkcs8_pem(pem)
            .map(SigningKey)
            .map_err(|e| BundleError::Key(format!("not an Ed25519 PKCS#8 private key: {e}")))
    }

    pub fn to_pem(&self) -> Result<String, BundleError> {
        self.0
            .to_pkcs8_pem(LineEnding::LF)
            .map(|p| p.to_string())
            .map_err(|e| BundleError::Key(e.to_string()))
    }

    pub fn public_key_pem(&self) -> Result<String, BundleError> {
        self.0
            .verifying_key()
            .to_public_key_pem(LineEnding::LF)
            .map_err(|e| BundleError::Key(e.to_string()))
    }

    pub fn sign(&self, message: &[u8]) -> Vec<u8> {
        self.0.sign(message).to_bytes().to_vec()
    }

    pub fn public_key(&self) -> PublicKey {
        PublicKey(self.0.verifying_key())
    }
}

/// An Ed25519 public key.
#[derive(Clone, PartialEq, Eq)]
pub struct PublicKey(ed25519_dalek::VerifyingKey);

impl PublicKey {
    pub fn from_pem(pem: &str) -> Result<PublicKey, BundleError> {
        ed25519_dalek::VerifyingKey::from_public_key_pem(pem.trim())
            .map(PublicKey)
            .map_err(|e| BundleError::Key(format!("not an Ed25519 public key (SPKI PEM): {e}")))
    }

    /// Short id: the first 8 bytes of SHA-256 of the raw key, hex.
    pub fn id(&self) -> String {
        hex::encode(&Sha256::digest(self.0.as_bytes())[..8])
    }

    pub fn verify(&self, message: &[u8], signature: &[u8]) -> bool {
        let Ok(bytes) = <[u8; 64]>::try_from(signature) else {
            return false;
        };
        self.0
            .verify_strict(message, &ed25519_dalek::Signature::from_bytes(&bytes))
            .is_ok()
    }
}

impl std::fmt::Debug for PublicKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "PublicKey({})", self.id())
    }
}

/// The operator's trusted publisher keys.
#[derive(Debug, Clone, Default)]
pub struct TrustedKeys {
    keys: Vec<PublicKey>,
}

impl TrustedKeys {
    pub fn new(keys: Vec<PublicKey>) -> TrustedKeys {
        TrustedKeys { keys }
    }

    /// Every `*.pem`/`*.pub` public key in `dir` (missing directory: none).
    pub fn from_dir(dir: &Path) -> Result<TrustedKeys, BundleError> {
        let mut keys = Vec::new();
        let Ok(entries) = std::fs::read_dir(dir) else {
            return Ok(TrustedKeys::default());
        };
        for entry in entries.flatten() {
            let path = entry.path();
            if matches!(
                path.extension().and_then(|e| e.to_str()),
                Some("pem" | "pub")
            ) {
                let pem = std::fs::read_to_string(&path)
                    .map_err(|e| BundleError::Key(format!("{}: {e}", path.display())))?;
                keys.push(
                    PublicKey::from_pem(&pem)
                        .map_err(|e| BundleError::Key(format!("{}: {e}", path.display())))?,
                );
            }
        }
        Ok(TrustedKeys { keys })
    }

    pub fn push(&mut self, key: PublicKey) {
        self.keys.push(key);
    }

    pub fn contains(&self, key: &PublicKey) -> bool {
        self.keys.contains(key)
    }

    pub fn ids(&self) -> Vec<String> {
        self.keys.iter().map(PublicKey::id).collect()
    }
}

/// A bundle's parts, not yet verified.
#[derive(Debug, Clone)]
pub struct Bundle {
    pub manifest_bytes: Vec<u8>,
    pub component: Vec<u8>,
    signature: Option<(PublicKey, Vec<u8>)>,
}

/// A bundle that passed [`Bundle::verify`].
#[derive(Debug, Clone)]
pub struct VerifiedBundle {
    pub manifest: Manifest,
    pub manifest_bytes: Vec<u8>,
    pub component: Vec<u8>,
    /// The trusted key that signed it; `None` when accepted unsigned under the development switch.
    pub signed_by: Option<String>,
    /// SHA-256 of the component, hex.
    pub component_sha256: String,
}

fn signed_message(manifest: &[u8], component: &[u8]) -> Vec<u8> {
    format!(
        "infrapilot-plugin-bundle/v1\n{}\n{}\n",
        hex::encode(Sha256::digest(manifest)),
        hex::encode(Sha256::digest(component))
    )
    .into_bytes()
}

impl Bundle {
    /// A bundle of `manifest_bytes` and `component`, signed with `key` when given.
    pub fn new(manifest_bytes: Vec<u8>, component: Vec<u8>, key: Option<&SigningKey>) -> Bundle {
        let signature = key.map(|k| {
            (
                k.public_key(),
                k.sign(&signed_message(&manifest_bytes, &component)),
            )
        });
        Bundle {
            manifest_bytes,
            component,
            signature,
        }
    }

    /// Reads a bundle from tar bytes; refuses anything but the three known files.
    pub fn from_tar(bytes: &[u8]) -> Result<Bundle, BundleError> {
        if bytes.len() as u64 > MAX_BUNDLE_BYTES {
            return Err(BundleError::Format(format!(
                "larger than {} MiB",
                MAX_BUNDLE_BYTES >> 20
            )));
        }
        let mut archive = tar::Archive::new(bytes);
        let (mut manifest, mut component, mut signature) = (None, None, None);
        let entries = archive
            .entries()
            .map_err(|e| BundleError::Format(format!("not a tar archive: {e}")))?;
        for entry in entries {
            let mut entry =
                entry.map_err(|e| BundleError::Format(format!("not a tar archive: {e}")))?;
            if !entry.header().entry_type().is_file() {
                return Err(BundleError::Format("only regular files are allowed".into()));
            }
            let path = entry
                .path()
                .map_err(|e| BundleError::Format(e.to_string()))?
                .to_string_lossy()
                .into_owned();
            let mut data = Vec::new();
            entry
                .by_ref()
                .take(MAX_BUNDLE_BYTES)
                .read_to_end(&mut data)
                .map_err(|e| BundleError::Format(e.to_string()))?;
            let slot = match path.as_str() {
                MANIFEST => &mut manifest,
                COMPONENT => &mut component,
                SIGNATURE => &mut signature,
                other => return Err(BundleError::Format(format!("unexpected file {other:?}"))),
            };
            if slot.replace(data).is_some() {
                return Err(BundleError::Format(format!("{path} appears twice")));
            }
        }
        let manifest_bytes =
            manifest.ok_or_else(|| BundleError::Format(format!("no {MANIFEST}")))?;
        let component = component.ok_or_else(|| BundleError::Format(format!("no {COMPONENT}")))?;
        let signature = match signature {
            None => None,
            Some(bytes) => {
                let file: SignatureFile = serde_json::from_slice(&bytes)
                    .map_err(|e| BundleError::Format(format!("{SIGNATURE}: {e}")))?;
                if file.algorithm != "ed25519" {
                    return Err(BundleError::Format(format!(
                        "{SIGNATURE}: algorithm {:?} is not supported",
                        file.algorithm
                    )));
                }
                let b64 = base64::engine::general_purpose::STANDARD;
                let raw = b64
                    .decode(&file.public_key)
                    .ok()
                    .and_then(|k| <[u8; 32]>::try_from(k).ok())
                    .and_then(|k| ed25519_dalek::VerifyingKey::from_bytes(&k).ok())
                    .ok_or_else(|| BundleError::Format(format!("{SIGNATURE}: bad public_key")))?;
                let sig = b64
                    .decode(&file.signature)
                    .map_err(|_| BundleError::Format(format!("{SIGNATURE}: bad signature")))?;
                Some((PublicKey(raw), sig))
            }
        };
        Ok(Bundle {
            manifest_bytes,
            component,
            signature,
        })
    }

    pub fn to_tar(&self) -> Vec<u8> {
        let mut builder = tar::Builder::new(Vec::new());
        let mut add = |name: &str, data: &[u8]| {
            let mut header = tar::Header::new_gnu();
            header.set_size(data.len() as u64);
            header.set_mode(0o644);
            header.set_cksum();
            builder
                .append_data(&mut header, name, data)
                .expect("writing to memory");
        };
        add(MANIFEST, &self.manifest_bytes);
        add(COMPONENT, &self.component);
        if let Some((key, sig)) = &self.signature {
            let b64 = base64::engine::general_purpose::STANDARD;
            let file = SignatureFile {
                algorithm: "ed25519".into(),
                public_key: b64.encode(key.0.as_bytes()),
                signature: b64.encode(sig),
            };
            add(
                SIGNATURE,
                &serde_json::to_vec_pretty(&file).expect("serializable"),
            );
        }
        builder.into_inner().expect("writing to memory")
    }

    /// Checks the manifest and the signature. `allow_unsigned` is the operator's development
    /// switch: it admits unsigned, untrusted and badly signed bundles as unsigned.
    pub fn verify(
        self,
        trusted: &TrustedKeys,
        allow_unsigned: bool,
    ) -> Result<VerifiedBundle, BundleError> {
        let manifest = Manifest::parse(&self.manifest_bytes)?;
        let signed_by = match &self.signature {
            None => None,
            Some((key, sig)) => {
                if !key.verify(&signed_message(&self.manifest_bytes, &self.component), sig) {
                    if allow_unsigned {
                        None
                    } else {
                        return Err(BundleError::BadSignature);
                    }
                } else if !trusted.contains(key) {
                    if allow_unsigned {
                        None
                    } else {
                        return Err(BundleError::UntrustedKey(key.id()));
                    }
                } else {
                    Some(key.id())
                }
            }
        };
        if signed_by.is_none() && !allow_unsigned {
            return Err(BundleError::Unsigned);
        }
        let component_sha256 = hex::encode(Sha256::digest(&self.component));
        Ok(VerifiedBundle {
            manifest,
            manifest_bytes: self.manifest_bytes,
            component: self.component,
            signed_by,
            component_sha256,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn manifest() -> Vec<u8> {
        serde_json::to_vec(&serde_json::json!({
            "id": "acme.pager", "name": "Pager", "version": "1.0.0", "world": "alert-channel",
            "wit_version": "0.1.0", "edition": "community", "settings_schema": {"type": "object"}
        }))
        .unwrap()
    }

    #[test]
    fn signed_bundles_verify_and_any_change_breaks_them() {
        let key = SigningKey::generate().unwrap();
        let other = SigningKey::generate().unwrap();
        let trusted = TrustedKeys::new(vec![
            PublicKey::from_pem(&key.public_key_pem().unwrap()).unwrap(),
        ]);
        let tar = Bundle::new(manifest(), b"\0asm component".to_vec(), Some(&key)).to_tar();
        let ok = Bundle::from_tar(&tar)
            .unwrap()
            .verify(&trusted, false)
            .unwrap();
        assert_eq!(ok.signed_by, Some(key.public_key().id()));

        // The same bytes re-signed by an unknown key: untrusted.
        let stranger = Bundle::new(manifest(), b"\0asm component".to_vec(), Some(&other)).to_tar();
        assert!(matches!(
            Bundle::from_tar(&stranger).unwrap().verify(&trusted, false),
            Err(BundleError::UntrustedKey(_))
        ));
        // A changed component or manifest under the original signature: tampered.
        let mut tampered = Bundle::from_tar(&tar).unwrap();
        tampered.component[0] ^= 1;
        assert!(matches!(
            tampered.verify(&trusted, false),
            Err(BundleError::BadSignature)
        ));
        let mut tampered = Bundle::from_tar(&tar).unwrap();
        tampered.manifest_bytes = manifest().into_iter().chain(*b" ").collect();
        assert!(matches!(
            tampered.verify(&trusted, false),
            Err(BundleError::BadSignature)
        ));
        // Unsigned: refused, unless the development switch is on.
        let unsigned = Bundle::new(manifest(), b"\0asm".to_vec(), None).to_tar();
        assert!(matches!(
            Bundle::from_tar(&unsigned).unwrap().verify(&trusted, false),
            Err(BundleError::Unsigned)
        ));
        let dev = Bundle::from_tar(&unsigned)
            .unwrap()
            .verify(&trusted, true)
            .unwrap();
        assert_eq!(dev.signed_by, None);
    }

    #[test]
    fn keys_round_trip_through_pem() {
        let key = SigningKey::generate().unwrap();
        let again = SigningKey::from_pem(&key.to_pem().unwrap()).unwrap();
        assert_eq!(again.public_key(), key.public_key());
        assert!(SigningKey::from_pem("not a key").is_err());
        assert!(PublicKey::from_pem(&key.to_pem().unwrap()).is_err());
    }

    #[test]
    fn malformed_archives_are_refused_with_a_reason() {
        assert!(matches!(
            Bundle::from_tar(b"garbage"),
            Err(BundleError::Format(_))
        ));
        let mut builder = tar::Builder::new(Vec::new());
        let mut header = tar::Header::new_gnu();
        header.set_size(1);
        header.set_cksum();
        builder
            .append_data(&mut header, "run.sh", &b"x"[..])
            .unwrap();
        let tar = builder.into_inner().unwrap();
        let err = Bundle::from_tar(&tar).unwrap_err().to_string();
        assert!(err.contains("unexpected file"), "{err}");
    }
}
