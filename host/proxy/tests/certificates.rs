//! Uploaded certificates: real chains made with rcgen, checked the way the API checks an
//! upload. Each bad upload is refused naming the field.

use infrapilot_proxy::certificate::{check_upload, covers};
use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, IsCa, Issuer, KeyPair,
};

struct Ca {
    pem: String,
    issuer: Issuer<'static, KeyPair>,
}

fn ca(name: &str) -> Ca {
    let key = KeyPair::generate().unwrap();
    let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
    params.distinguished_name = DistinguishedName::new();
    params.distinguished_name.push(DnType::CommonName, name);
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let pem = params.self_signed(&key).unwrap().pem();
    Ca {
        issuer: Issuer::new(params, key),
        pem,
    }
}

/// A leaf for `names` signed by `ca`, valid for `days` from yesterday: (leaf PEM, key PEM).
fn leaf(ca: &Ca, names: &[&str], days: i64) -> (String, String) {
    let key = KeyPair::generate().unwrap();
    let mut params =
        CertificateParams::new(names.iter().map(|n| n.to_string()).collect::<Vec<_>>()).unwrap();
    params.is_ca = IsCa::ExplicitNoCa;
    let now = time::OffsetDateTime::now_utc();
    params.not_before = now - time::Duration::days(2);
    params.not_after = now + time::Duration::days(days);
    let cert = params.signed_by(&key, &ca.issuer).unwrap();
    (cert.pem(), key.serialize_pem())
}

fn now() -> i64 {
    time::OffsetDateTime::now_utc().unix_timestamp()
}

fn refused(chain: &str, key: &str) -> (String, String) {
    let e = check_upload(chain, key, now()).expect_err("refused");
    (e.field, e.message)
}

#[test]
fn a_chain_and_its_key_are_accepted_and_re_encoded() {
    let root = ca("Test Root");
    let (cert, key) = leaf(&root, &["example.test", "*.example.test"], 90);
    // CRLF line ends and text around the blocks are what users paste.
    let chain = format!(
        "subject=example\r\n{}{}",
        cert.replace('\n', "\r\n"),
        root.pem
    );
    let checked = check_upload(&chain, &key, now()).unwrap();
    assert_eq!(
        checked.facts.domains,
        vec!["example.test", "*.example.test"]
    );
    assert_eq!(checked.facts.issuer, "Test Root");
    assert_eq!(checked.facts.chain_length, 2);
    assert_eq!(checked.facts.fingerprint_sha256.len(), 64);
    assert!(checked.facts.not_after > now() + 80 * 86_400);
    assert!(!checked.chain_pem.contains('\r') && !checked.chain_pem.contains("subject="));
    assert_eq!(checked.chain_pem.matches("BEGIN CERTIFICATE").count(), 2);
    assert!(checked.key_pem.starts_with("-----BEGIN PRIVATE KEY-----\n"));
}

#[test]
fn bad_uploads_are_refused_naming_the_field() {
    let root = ca("Test Root");
    let (cert, key) = leaf(&root, &["example.test"], 90);
    let (_, other_key) = leaf(&root, &["example.test"], 90);
    let (expired, expired_key) = leaf(&root, &["example.test"], -1);
    let other_root = ca("Other Root");

    let cases: Vec<(&str, String, String, &str)> = vec![
        ("empty", String::new(), key.clone(), "certificate_pem"),
        ("not PEM", "hello".into(), key.clone(), "certificate_pem"),
        (
            "broken base64",
            "-----BEGIN CERTIFICATE-----\n@@@@\n-----END CERTIFICATE-----\n".into(),
            key.clone(),
            "certificate_pem",
        ),
        (
            "not X.509",
            "-----BEGIN CERTIFICATE-----\naGVsbG8=\n-----END CERTIFICATE-----\n".into(),
            key.clone(),
            "certificate_pem",
        ),
        (
            "key in the chain",
            format!("{cert}{key}"),
            key.clone(),
            "certificate_pem",
        ),
        (
            "CA first",
            format!("{}{cert}", root.pem),
            key.clone(),
            "certificate_pem",
        ),
        (
            "wrong issuer after it",
            format!("{cert}{}", other_root.pem),
            key.clone(),
            "certificate_pem",
        ),
        ("expired", expired, expired_key, "certificate_pem"),
        (
            "non-ASCII",
            format!("{cert}é"),
            key.clone(),
            "certificate_pem",
        ),
        ("huge", "A".repeat(70_000), key.clone(), "certificate_pem"),
        ("no key", cert.clone(), String::new(), "private_key_pem"),
        (
            "another key",
            cert.clone(),
            other_key.clone(),
            "private_key_pem",
        ),
        (
            "two keys",
            cert.clone(),
            format!("{key}{other_key}"),
            "private_key_pem",
        ),
        (
            "a certificate as key",
            cert.clone(),
            cert.clone(),
            "private_key_pem",
        ),
        (
            "encrypted key",
            cert.clone(),
            key.replace("PRIVATE KEY", "ENCRYPTED PRIVATE KEY"),
            "private_key_pem",
        ),
        (
            "garbage key",
            cert.clone(),
            "-----BEGIN PRIVATE KEY-----\naGVsbG8=\n-----END PRIVATE KEY-----\n".into(),
            "private_key_pem",
        ),
    ];
    for (what, chain, key, field) in cases {
        let (got, message) = refused(&chain, &key);
        assert_eq!(got, field, "{what}: {message}");
        assert!(!message.is_empty(), "{what}");
    }
    // The same pair is accepted: the refusals above are about what was changed.
    check_upload(&cert, &key, now()).unwrap();
}

#[test]
fn wildcard_coverage() {
    assert!(covers("*.example.test", "www.example.test"));
    assert!(!covers("*.example.test", "a.www.example.test"));
    assert!(!covers("www.example.test", "example.test"));
}
