//! Interface `jws`: the signature of a compact JWS (an ID token) checked against a JWK Set
//! natively, with aws-lc-rs through `jsonwebtoken`. In WebAssembly an RS256 check is about a
//! millisecond of a login; here it is tens of microseconds. Only asymmetric algorithms, the key
//! the header names and suited to its algorithm; the claims are the caller's to check.

use jsonwebtoken::jwk::{AlgorithmParameters, EllipticCurve, Jwk, JwkSet, PublicKeyUse};
use jsonwebtoken::{Algorithm, DecodingKey};

/// A token longer than this is refused unread.
pub(crate) const MAX_TOKEN_BYTES: usize = 16 * 1024;
/// A key set longer than this is refused unread.
pub(crate) const MAX_JWKS_BYTES: usize = 256 * 1024;

/// Whether `jwk` can check `alg` signatures: its type and curve.
fn key_suits(jwk: &Jwk, alg: Algorithm) -> bool {
    use Algorithm::*;
    match (&jwk.algorithm, alg) {
        (AlgorithmParameters::RSA(_), RS256 | RS384 | RS512 | PS256 | PS384 | PS512) => true,
        (AlgorithmParameters::EllipticCurve(p), ES256) => p.curve == EllipticCurve::P256,
        (AlgorithmParameters::EllipticCurve(p), ES384) => p.curve == EllipticCurve::P384,
        (AlgorithmParameters::OctetKeyPair(p), EdDSA) => p.curve == EllipticCurve::Ed25519,
        _ => false,
    }
}

/// Checks `token`'s signature against the key set `jwks` (JSON). `Err`: why it does not hold.
pub(crate) fn verify(token: &str, jwks: &str) -> Result<(), String> {
    // aws-lc-rs, named rather than chosen by feature detection (which panics when two providers
    // are compiled in).
    static PROVIDER: std::sync::Once = std::sync::Once::new();
    PROVIDER.call_once(|| {
        let _ = jsonwebtoken::crypto::aws_lc::DEFAULT_PROVIDER.install_default();
    });
    if token.len() > MAX_TOKEN_BYTES {
        return Err(format!("token: longer than {MAX_TOKEN_BYTES} bytes"));
    }
    if jwks.len() > MAX_JWKS_BYTES {
        return Err(format!("jwks: longer than {MAX_JWKS_BYTES} bytes"));
    }
    let header =
        jsonwebtoken::decode_header(token).map_err(|e| format!("token: its header: {e}"))?;
    // `none` and the HMAC algorithms never: a public key must not become a shared secret.
    use Algorithm::*;
    if !matches!(
        header.alg,
        RS256 | RS384 | RS512 | PS256 | PS384 | PS512 | ES256 | ES384 | EdDSA
    ) {
        return Err(format!(
            "token: {:?} is not an asymmetric signature algorithm",
            header.alg
        ));
    }
    let set: JwkSet = serde_json::from_str(jwks).map_err(|e| format!("jwks: {e}"))?;
    // The one key that may have signed it: named by the kid (when there is one), suited to the
    // algorithm, for signatures, and of that algorithm if it names one. None, or several, and
    // the token is refused.
    let alg_name = format!("{:?}", header.alg);
    let mut candidates = set.keys.iter().filter(|k| {
        header
            .kid
            .as_deref()
            .is_none_or(|kid| k.common.key_id.as_deref() == Some(kid))
            && key_suits(k, header.alg)
            && !matches!(
                k.common.public_key_use,
                Some(PublicKeyUse::Encryption | PublicKeyUse::Other(_))
            )
            && k.common
                .key_algorithm
                .as_ref()
                .is_none_or(|own| own.to_string() == alg_name)
            && k.common.key_operations.as_ref().is_none_or(|ops| {
                ops.iter()
                    .any(|op| matches!(op, jsonwebtoken::jwk::KeyOperations::Verify))
            })
    });
    let jwk = match (candidates.next(), candidates.next()) {
        (Some(only), None) => only,
        (None, _) => {
            return Err(format!(
                "jwks: no signature key {} suited to {alg_name}",
                header
                    .kid
                    .as_deref()
                    .map_or_else(String::new, |kid| format!("{kid:?}"))
            ));
        }
        (Some(_), Some(_)) => {
            return Err(format!(
                "jwks: several keys could have signed it ({alg_name}{})",
                header
                    .kid
                    .as_deref()
                    .map_or_else(String::new, |kid| format!(", kid {kid:?}"))
            ));
        }
    };
    let key = DecodingKey::from_jwk(jwk).map_err(|e| format!("jwks: {e}"))?;
    let (message, signature) = token.rsplit_once('.').ok_or("token: not a compact JWS")?;
    match jsonwebtoken::crypto::verify(signature, message.as_bytes(), &key, header.alg) {
        Ok(true) => Ok(()),
        Ok(false) => Err("the signature does not hold".into()),
        Err(e) => Err(format!("the signature does not hold: {e}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use jsonwebtoken::{EncodingKey, Header};
    use serde_json::json;

    /// A PEM private key made by `openssl genpkey` with `args`.
    fn private_pem(args: &[&str]) -> Vec<u8> {
        let out = std::process::Command::new("openssl")
            .arg("genpkey")
            .args(args)
            .output()
            .expect("openssl (Debian package openssl)");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        out.stdout
    }

    fn rsa_key() -> EncodingKey {
        EncodingKey::from_rsa_pem(&private_pem(&[
            "-algorithm",
            "RSA",
            "-pkeyopt",
            "rsa_keygen_bits:2048",
        ]))
        .unwrap()
    }

    fn ec_key() -> EncodingKey {
        EncodingKey::from_ec_pem(&private_pem(&[
            "-algorithm",
            "EC",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
        ]))
        .unwrap()
    }

    /// The public JWK of `key` for `alg`, with `kid` and extra members.
    fn public(
        key: &EncodingKey,
        alg: Algorithm,
        kid: &str,
        extra: serde_json::Value,
    ) -> serde_json::Value {
        let mut jwk = serde_json::to_value(Jwk::from_encoding_key(key, alg).unwrap()).unwrap();
        jwk["kid"] = json!(kid);
        // Without an `alg` of its own unless `extra` gives one (many providers publish none).
        jwk.as_object_mut().unwrap().remove("alg");
        jwk.as_object_mut()
            .unwrap()
            .extend(extra.as_object().unwrap().clone());
        jwk
    }

    fn token(key: &EncodingKey, alg: Algorithm, kid: Option<&str>) -> String {
        let mut header = Header::new(alg);
        header.kid = kid.map(str::to_owned);
        jsonwebtoken::encode(&header, &json!({"sub": "s", "nonce": "n"}), key).unwrap()
    }

    fn set(keys: &[serde_json::Value]) -> String {
        json!({ "keys": keys }).to_string()
    }

    #[test]
    fn a_signature_holds_only_for_its_key_its_algorithm_and_its_bytes() {
        let (rsa, ec) = (rsa_key(), ec_key());
        let rsa_jwk = public(&rsa, Algorithm::RS256, "r1", json!({}));
        let ec_jwk = public(&ec, Algorithm::ES256, "e1", json!({}));
        let both = set(&[rsa_jwk.clone(), ec_jwk.clone()]);
        let good = token(&rsa, Algorithm::RS256, Some("r1"));
        assert_eq!(verify(&good, &both), Ok(()));
        assert_eq!(
            verify(&token(&ec, Algorithm::ES256, Some("e1")), &both),
            Ok(())
        );
        assert_eq!(
            verify(&token(&rsa, Algorithm::PS256, Some("r1")), &both),
            Ok(())
        );

        // The claims changed after signing.
        let mut parts: Vec<&str> = good.split('.').collect();
        let forged_claims = base64::Engine::encode(
            &base64::engine::general_purpose::URL_SAFE_NO_PAD,
            br#"{"sub":"admin","nonce":"n"}"#,
        );
        parts[1] = &forged_claims;
        let e = verify(&parts.join("."), &both).unwrap_err();
        assert!(e.contains("does not hold"), "{e}");
        // Another key named by the kid.
        let other = token(&rsa_key(), Algorithm::RS256, Some("r1"));
        assert!(verify(&other, &both).unwrap_err().contains("does not hold"));
        // An unknown kid; a key that does not suit the algorithm.
        assert!(
            verify(&token(&rsa, Algorithm::RS256, Some("r9")), &both)
                .unwrap_err()
                .contains("no signature key")
        );
        let e = verify(&token(&ec, Algorithm::ES256, Some("r1")), &both).unwrap_err();
        assert!(e.contains("no signature key"), "{e}");
        // Without a kid: the only suited key, or refused when several could have signed.
        assert_eq!(verify(&token(&rsa, Algorithm::RS256, None), &both), Ok(()));
        let two_rsa = set(&[
            rsa_jwk.clone(),
            public(&rsa_key(), Algorithm::RS256, "r2", json!({})),
        ]);
        let e = verify(&token(&rsa, Algorithm::RS256, None), &two_rsa).unwrap_err();
        assert!(e.contains("several keys"), "{e}");
        // Two keys under one kid: ambiguous, refused; an encryption key beside it is not one.
        let twins = set(&[
            rsa_jwk.clone(),
            public(&rsa_key(), Algorithm::RS256, "r1", json!({})),
        ]);
        assert!(verify(&good, &twins).unwrap_err().contains("several keys"));
        let with_enc = set(&[
            public(&rsa_key(), Algorithm::RS256, "r1", json!({"use": "enc"})),
            rsa_jwk.clone(),
        ]);
        assert_eq!(verify(&good, &with_enc), Ok(()));
        // A key that names its own algorithm, or is for encryption.
        let pinned = set(&[public(
            &rsa,
            Algorithm::RS256,
            "r1",
            json!({"alg": "RS512"}),
        )]);
        let e = verify(&good, &pinned).unwrap_err();
        assert!(e.contains("no signature key"), "{e}");
        let pinned = set(&[public(
            &rsa,
            Algorithm::RS256,
            "r1",
            json!({"alg": "RS256"}),
        )]);
        assert_eq!(verify(&good, &pinned), Ok(()));
        let encryption = set(&[public(&rsa, Algorithm::RS256, "r1", json!({"use": "enc"}))]);
        assert!(
            verify(&good, &encryption)
                .unwrap_err()
                .contains("no signature key")
        );
        let not_for_verifying = set(&[public(
            &rsa,
            Algorithm::RS256,
            "r1",
            json!({"key_ops": ["encrypt"]}),
        )]);
        assert!(verify(&good, &not_for_verifying).is_err());
        let for_verifying = set(&[public(
            &rsa,
            Algorithm::RS256,
            "r1",
            json!({"key_ops": ["verify"]}),
        )]);
        assert_eq!(verify(&good, &for_verifying), Ok(()));
    }

    #[test]
    fn no_unsigned_or_symmetric_token_and_nothing_oversized() {
        let rsa = rsa_key();
        let jwks = set(&[public(&rsa, Algorithm::RS256, "r1", json!({}))]);
        // HS256 keyed with the public modulus: the algorithm confusion attack.
        let n = public(&rsa, Algorithm::RS256, "r1", json!({}))["n"]
            .as_str()
            .unwrap()
            .to_owned();
        let mut header = Header::new(Algorithm::HS256);
        header.kid = Some("r1".into());
        let hs = jsonwebtoken::encode(
            &header,
            &json!({"sub": "s"}),
            &EncodingKey::from_secret(n.as_bytes()),
        )
        .unwrap();
        let e = verify(&hs, &jwks).unwrap_err();
        assert!(e.contains("not an asymmetric"), "{e}");
        // `alg: none`, unsigned.
        let b64 =
            |v: &str| base64::Engine::encode(&base64::engine::general_purpose::URL_SAFE_NO_PAD, v);
        let none = format!(
            "{}.{}.",
            b64(r#"{"alg":"none","kid":"r1"}"#),
            b64(r#"{"sub":"s"}"#)
        );
        assert!(verify(&none, &jwks).is_err());
        assert!(verify("not a token", &jwks).is_err());
        assert!(verify(&token(&rsa, Algorithm::RS256, Some("r1")), "{").is_err());
        let big = "a".repeat(MAX_TOKEN_BYTES + 1);
        assert!(verify(&big, &jwks).unwrap_err().contains("longer"));
        let big_set = format!("{{\"keys\":[],\"x\":\"{}\"}}", "a".repeat(MAX_JWKS_BYTES));
        assert!(
            verify(&token(&rsa, Algorithm::RS256, Some("r1")), &big_set)
                .unwrap_err()
                .contains("longer")
        );
    }
}
