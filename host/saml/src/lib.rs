//! SAML 2.0 as the host does it for the `saml` plugin capability. A plugin never sees a key or
//! parses XML that matters: it hands over the identity provider's metadata and gets a signed
//! AuthnRequest (HTTP-Redirect binding) for a login, or the facts of an assertion whose
//! signature holds. The XML signature work is samael's (xmlsec: only what a valid signature by
//! the metadata's certificate covers is read — the defence against signature wrapping); on top
//! of it the host refuses what samael lets through:
//!
//! - metadata without a signing certificate (samael would then accept unsigned responses),
//!   metadata or responses with a DTD (entity expansion, XXE), and responses with XML comments
//!   (a comment inside a signed NameID truncates it for some parsers while the signature, made
//!   over the comment-free canonical form, still holds);
//! - signature algorithms weaker than SHA-256;
//! - an assertion without an `AudienceRestriction` naming this service provider;
//! - an assertion seen before (a replay cache of assertion ids until they expire);
//! - a response that answers no request of this login (`InResponseTo`; unsolicited responses
//!   are never accepted), or whose `Destination`/`Recipient` is not this provider's ACS URL, or
//!   outside its time window with at most three minutes of skew (samael's checks, configured).

use std::collections::HashMap;
use std::sync::Mutex;

use base64::Engine as _;
use samael::crypto::{AllowedSignatureAlgorithm, CertificateDer};
use samael::metadata::EntityDescriptor;
use samael::service_provider::ServiceProvider as SamaelSp;

/// HTTP-Redirect binding (where the browser is sent with the AuthnRequest).
const REDIRECT_BINDING: &str = "urn:oasis:names:tc:SAML:2.0:bindings:HTTP-Redirect";
const MAX_METADATA_BYTES: usize = 256 * 1024;
const MAX_RESPONSE_BYTES: usize = 1 << 20;
/// Clock skew allowed on every time check, and how late a response may arrive.
const SKEW_SECONDS: i64 = 180;
/// Assertion ids remembered at most (the oldest expiry goes first when full).
const REPLAY_CAPACITY: usize = 100_000;

/// libxml2 and xmlsec keep process-wide state: one SAML operation at a time (sign-ins are rare
/// and each takes milliseconds).
static XMLSEC: Mutex<()> = Mutex::new(());

fn xmlsec_turn() -> std::sync::MutexGuard<'static, ()> {
    XMLSEC.lock().unwrap_or_else(|p| p.into_inner())
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SamlError {
    /// The identity provider's metadata cannot be used; the text says why.
    #[error("{0}")]
    InvalidMetadata(String),
    /// The response does not hold; the text says which check failed.
    #[error("{0}")]
    Rejected(String),
    /// This host's own keys or libraries failed.
    #[error("{0}")]
    Internal(String),
}

/// This host as a SAML service provider for one sign-in provider.
#[derive(Clone)]
pub struct ServiceProvider {
    /// Its entity id (the URL of its metadata).
    pub entity_id: String,
    /// Where responses are posted (the provider's callback).
    pub acs_url: String,
    /// PEM of its signing key (sealed at rest by the caller).
    pub key_pem: String,
    pub cert_pem: String,
}

impl std::fmt::Debug for ServiceProvider {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServiceProvider")
            .field("entity_id", &self.entity_id)
            .field("acs_url", &self.acs_url)
            .finish_non_exhaustive()
    }
}

/// A signed AuthnRequest's way to the identity provider.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestStart {
    pub redirect_url: String,
    /// The request's id: the response must answer it (`InResponseTo`).
    pub request_id: String,
}

/// What a valid assertion says, as its signature covers it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AssertionFacts {
    pub assertion_id: String,
    pub issuer: String,
    pub name_id: String,
    pub name_id_format: Option<String>,
    pub session_index: Option<String>,
    /// The authentication context class the identity provider reports (how the person signed
    /// in, e.g. `…:classes:PasswordProtectedTransport`).
    pub authn_context: Option<String>,
    /// Attribute name (its `Name`, else its `FriendlyName`) and values.
    pub attributes: Vec<(String, Vec<String>)>,
}

/// A new RSA-2048 key and a self-signed certificate for a service provider (ten years).
pub fn generate_keys(common_name: &str) -> Result<(String, String), SamlError> {
    use openssl::asn1::Asn1Time;
    use openssl::bn::{BigNum, MsbOption};
    use openssl::hash::MessageDigest;
    use openssl::pkey::PKey;
    use openssl::rsa::Rsa;
    use openssl::x509::{X509, X509NameBuilder};
    let internal = |e: openssl::error::ErrorStack| SamlError::Internal(e.to_string());
    let key = PKey::from_rsa(Rsa::generate(2048).map_err(internal)?).map_err(internal)?;
    let mut name = X509NameBuilder::new().map_err(internal)?;
    name.append_entry_by_text("CN", common_name)
        .map_err(internal)?;
    let name = name.build();
    let mut serial = BigNum::new().map_err(internal)?;
    serial
        .rand(128, MsbOption::MAYBE_ZERO, false)
        .map_err(internal)?;
    let mut cert = X509::builder().map_err(internal)?;
    cert.set_version(2).map_err(internal)?;
    let serial = serial.to_asn1_integer().map_err(internal)?;
    cert.set_serial_number(&serial).map_err(internal)?;
    cert.set_subject_name(&name).map_err(internal)?;
    cert.set_issuer_name(&name).map_err(internal)?;
    cert.set_pubkey(&key).map_err(internal)?;
    let not_before = Asn1Time::days_from_now(0).map_err(internal)?;
    let not_after = Asn1Time::days_from_now(3650).map_err(internal)?;
    cert.set_not_before(&not_before).map_err(internal)?;
    cert.set_not_after(&not_after).map_err(internal)?;
    cert.sign(&key, MessageDigest::sha256()).map_err(internal)?;
    let key_pem = String::from_utf8(key.private_key_to_pem_pkcs8().map_err(internal)?)
        .map_err(|e| SamlError::Internal(e.to_string()))?;
    let cert_pem = String::from_utf8(cert.build().to_pem().map_err(internal)?)
        .map_err(|e| SamlError::Internal(e.to_string()))?;
    Ok((key_pem, cert_pem))
}

fn refuse_dtd(xml: &str, what: &str) -> Result<(), String> {
    let upper = xml.to_ascii_uppercase();
    if upper.contains("<!DOCTYPE") || upper.contains("<!ENTITY") {
        return Err(format!("{what}: a DTD is not allowed"));
    }
    Ok(())
}

/// Parses and checks an identity provider's metadata: one entity with an SSO endpoint for the
/// HTTP-Redirect binding (https, or http on loopback) and a signing certificate.
pub fn check_metadata(xml: &str) -> Result<EntityDescriptor, SamlError> {
    let invalid = SamlError::InvalidMetadata;
    if xml.len() > MAX_METADATA_BYTES {
        return Err(invalid("the metadata is larger than 256 KiB".into()));
    }
    refuse_dtd(xml, "the metadata").map_err(invalid)?;
    let metadata: EntityDescriptor = xml
        .parse()
        .map_err(|e| invalid(format!("the metadata is not a SAML EntityDescriptor: {e}")))?;
    if metadata.entity_id.as_deref().is_none_or(str::is_empty) {
        return Err(invalid("the metadata has no entityID".into()));
    }
    if metadata
        .idp_sso_descriptors
        .as_ref()
        .is_none_or(Vec::is_empty)
    {
        return Err(invalid(
            "the metadata describes no identity provider (IDPSSODescriptor)".into(),
        ));
    }
    let sp = samael_sp(None, &metadata, None)?;
    match sp.idp_signing_certs() {
        Ok(Some(certs)) if !certs.is_empty() => {}
        Ok(_) => {
            return Err(invalid(
                "the metadata has no signing certificate: its responses could not be checked"
                    .into(),
            ));
        }
        Err(e) => return Err(invalid(format!("a certificate in the metadata: {e}"))),
    }
    let endpoint = sp.sso_binding_location(REDIRECT_BINDING).ok_or_else(|| {
        invalid("the metadata has no SingleSignOnService for the HTTP-Redirect binding".into())
    })?;
    let loopback = [
        "http://127.0.0.1:",
        "http://127.0.0.1/",
        "http://localhost:",
        "http://[::1]:",
    ];
    if !endpoint.starts_with("https://") && !loopback.iter().any(|p| endpoint.starts_with(p)) {
        return Err(invalid(format!(
            "the SingleSignOnService {endpoint} is not https"
        )));
    }
    Ok(metadata)
}

fn samael_sp(
    sp: Option<&ServiceProvider>,
    metadata: &EntityDescriptor,
    key: Option<openssl::pkey::PKey<openssl::pkey::Private>>,
) -> Result<SamaelSp, SamlError> {
    let certificate = match sp {
        Some(sp) => Some(CertificateDer::from(
            openssl::x509::X509::from_pem(sp.cert_pem.as_bytes())
                .and_then(|c| c.to_der())
                .map_err(|e| {
                    SamlError::Internal(format!("the service provider's certificate: {e}"))
                })?,
        )),
        None => None,
    };
    Ok(SamaelSp {
        entity_id: sp.map(|s| s.entity_id.clone()),
        metadata_url: sp.map(|s| s.entity_id.clone()),
        acs_url: sp.map(|s| s.acs_url.clone()),
        slo_url: None,
        key,
        certificate,
        idp_metadata: metadata.clone(),
        allow_idp_initiated: false,
        max_clock_skew: chrono::Duration::seconds(SKEW_SECONDS),
        max_issue_delay: chrono::Duration::seconds(SKEW_SECONDS),
        allowed_signature_algorithms: Some(vec![
            AllowedSignatureAlgorithm::RsaSha256,
            AllowedSignatureAlgorithm::RsaSha384,
            AllowedSignatureAlgorithm::RsaSha512,
            AllowedSignatureAlgorithm::EcdsaSha256,
            AllowedSignatureAlgorithm::EcdsaSha384,
            AllowedSignatureAlgorithm::EcdsaSha512,
        ]),
        ..SamaelSp::default()
    })
}

fn random_id() -> Result<String, SamlError> {
    let mut bytes = [0u8; 20];
    getrandom::fill(&mut bytes).map_err(|e| SamlError::Internal(e.to_string()))?;
    // An NCName: starts with a letter or underscore.
    Ok(format!("_{}", hex::encode(bytes)))
}

/// A signed AuthnRequest to the identity provider of `idp_metadata` (HTTP-Redirect binding),
/// with `relay_state` (the host's login state) and a fresh request id.
pub fn begin(
    sp: &ServiceProvider,
    idp_metadata: &str,
    relay_state: &str,
    force_authn: bool,
) -> Result<RequestStart, SamlError> {
    let _turn = xmlsec_turn();
    let metadata = check_metadata(idp_metadata)?;
    let key = openssl::pkey::PKey::private_key_from_pem(sp.key_pem.as_bytes())
        .map_err(|e| SamlError::Internal(format!("the service provider's key: {e}")))?;
    let mut samael = samael_sp(Some(sp), &metadata, Some(key.clone()))?;
    samael.force_authn = force_authn;
    let endpoint = samael
        .sso_binding_location(REDIRECT_BINDING)
        .ok_or_else(|| SamlError::InvalidMetadata("no HTTP-Redirect endpoint".into()))?;
    let mut request = samael
        .make_authentication_request(&endpoint)
        .map_err(|e| SamlError::Internal(e.to_string()))?;
    request.id = random_id()?;
    let url = request
        .signed_redirect(relay_state, &key)
        .map_err(|e| SamlError::Internal(format!("signing the request: {e}")))?
        .ok_or_else(|| SamlError::Internal("the request has no destination".into()))?;
    Ok(RequestStart {
        redirect_url: url.to_string(),
        request_id: request.id,
    })
}

/// Assertion ids already accepted, until they expire (per process; the login each response
/// answers is single use in the database as well, which holds across replicas).
#[derive(Default)]
pub struct ReplayCache {
    seen: Mutex<HashMap<String, i64>>,
}

impl ReplayCache {
    /// Records `id` until `expires_at` (Unix seconds); false when it was seen and has not expired.
    pub fn spend(&self, id: &str, expires_at: i64, now: i64) -> bool {
        let mut seen = self.seen.lock().unwrap_or_else(|p| p.into_inner());
        if seen.get(id).is_some_and(|until| *until > now) {
            return false;
        }
        if seen.len() >= REPLAY_CAPACITY {
            seen.retain(|_, until| *until > now);
            if seen.len() >= REPLAY_CAPACITY
                && let Some(oldest) = seen
                    .iter()
                    .min_by_key(|(_, until)| **until)
                    .map(|(k, _)| k.clone())
            {
                seen.remove(&oldest);
            }
        }
        seen.insert(id.to_owned(), expires_at);
        true
    }
}

/// Checks a base64 `SAMLResponse` (HTTP-POST binding) that must answer `request_id`, and
/// returns what its valid signature covers.
pub fn validate(
    sp: &ServiceProvider,
    idp_metadata: &str,
    saml_response: &str,
    request_id: &str,
    replay: &ReplayCache,
) -> Result<AssertionFacts, SamlError> {
    let rejected = SamlError::Rejected;
    let metadata = check_metadata(idp_metadata)?;
    let compact: String = saml_response
        .chars()
        .filter(|c| !c.is_ascii_whitespace())
        .collect();
    if compact.is_empty() || compact.len() > MAX_RESPONSE_BYTES {
        return Err(rejected("SAMLResponse: empty or larger than 1 MiB".into()));
    }
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(compact.as_bytes())
        .map_err(|_| rejected("SAMLResponse: not base64".into()))?;
    let xml = String::from_utf8(bytes).map_err(|_| rejected("SAMLResponse: not UTF-8".into()))?;
    refuse_dtd(&xml, "the response").map_err(rejected)?;
    if xml.contains("<!--") {
        return Err(rejected(
            "the response contains XML comments, which are refused (they can truncate signed values)"
                .into(),
        ));
    }
    check_encoding(&xml).map_err(rejected)?;
    check_shape(&xml).map_err(rejected)?;
    if request_id.is_empty() {
        return Err(rejected(
            "no request of this login to answer (unsolicited responses are refused)".into(),
        ));
    }
    let samael = samael_sp(Some(sp), &metadata, None)?;
    let _turn = xmlsec_turn();
    let assertion = samael
        .parse_xml_response(&xml, Some(&[request_id]))
        .map_err(|e| rejected(format!("the response does not hold: {e}")))?;
    // What the Response says outside the signature (when only the assertion is signed) is not
    // trusted, but it is not ignored either: it must agree.
    check_unsigned_response(&xml, sp, &metadata, request_id).map_err(rejected)?;
    let audience_ok = assertion
        .conditions
        .as_ref()
        .and_then(|c| c.audience_restrictions.as_ref())
        .is_some_and(|restrictions| {
            !restrictions.is_empty()
                && restrictions
                    .iter()
                    .all(|r| r.audience.iter().any(|a| a == &sp.entity_id))
        });
    if !audience_ok {
        return Err(rejected(format!(
            "the assertion is not restricted to this service provider (Audience {})",
            sp.entity_id
        )));
    }
    let name_id = assertion
        .subject
        .as_ref()
        .and_then(|s| s.name_id.as_ref())
        .filter(|n| !n.value.trim().is_empty())
        .ok_or_else(|| rejected("the assertion names no subject (NameID)".into()))?;
    let now = chrono::Utc::now().timestamp();
    if assertion.issue_instant.timestamp() > now + SKEW_SECONDS {
        return Err(rejected("the assertion is issued in the future".into()));
    }
    // Remembered until it could no longer be accepted anyway (issued at most the skew ago),
    // however far its NotOnOrAfter lies: an identity provider cannot fill the cache for long.
    let expires_at = assertion.issue_instant.timestamp().max(now) + 2 * SKEW_SECONDS;
    let replay_key = format!(
        "{}|{}|{}",
        sp.entity_id,
        assertion.issuer.value.as_deref().unwrap_or_default(),
        assertion.id
    );
    if !replay.spend(&replay_key, expires_at, now) {
        return Err(rejected("this assertion was used already".into()));
    }
    let mut attributes: Vec<(String, Vec<String>)> = Vec::new();
    for statement in assertion.attribute_statements.iter().flatten() {
        for attribute in &statement.attributes {
            let Some(name) = attribute
                .name
                .clone()
                .or_else(|| attribute.friendly_name.clone())
            else {
                continue;
            };
            let values: Vec<String> = attribute
                .values
                .iter()
                .filter_map(|v| v.value.clone())
                .collect();
            attributes.push((name, values));
        }
    }
    Ok(AssertionFacts {
        assertion_id: assertion.id.clone(),
        issuer: assertion.issuer.value.clone().unwrap_or_default(),
        name_id: name_id.value.trim().to_owned(),
        name_id_format: name_id.format.clone(),
        session_index: assertion
            .authn_statements
            .iter()
            .flatten()
            .find_map(|s| s.session_index.clone()),
        authn_context: assertion
            .authn_statements
            .iter()
            .flatten()
            .find_map(|s| s.authn_context.as_ref()?.value.as_ref()?.value.clone())
            .map(|v| v.trim().to_owned()),
        attributes,
    })
}

fn xml_attribute(value: &str) -> String {
    value
        .replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// Canonicalisation and transform algorithms a signature here may use: no comments kept, no
/// XPath or XSLT, nothing that fetches.
const ALLOWED_TRANSFORMS: [&str; 3] = [
    "http://www.w3.org/2000/09/xmldsig#enveloped-signature",
    "http://www.w3.org/2001/10/xml-exc-c14n#",
    "http://www.w3.org/TR/2001/REC-xml-c14n-20010315",
];

/// The document's shape, before any signature work (xmlsec would compute every reference's
/// digest before it checks a signature, following any URI and transform it names):
/// - one `Response` root with exactly one `Assertion` anywhere in it (a second one — an evil
///   twin beside, around or inside the signed one, the signature-wrapping attacks — is refused
///   whichever one a signature covers), nothing encrypted;
/// - the assertion signed itself (as this provider's metadata asks: `WantAssertionsSigned`);
/// - at most two signatures, each a direct child of the Response or the Assertion with exactly
///   one reference, to its parent's `ID`; only the enveloped-signature and comment-free
///   canonicalisation transforms; no `Object`, `Manifest` or `RetrievalMethod`;
/// - no DTD, comment or processing instruction.
fn check_shape(xml: &str) -> Result<(), String> {
    use quick_xml::events::Event;
    let attribute = |e: &quick_xml::events::BytesStart, name: &[u8]| -> Option<String> {
        e.attributes()
            .flatten()
            .find(|a| a.key.local_name().as_ref() == name)
            .and_then(|a| {
                a.normalized_value(quick_xml::XmlVersion::Implicit1_0)
                    .ok()
                    .map(|v| v.into_owned())
            })
    };
    let mut reader = quick_xml::Reader::from_str(xml);
    // (local name, its ID attribute) of each open element.
    let mut stack: Vec<(Vec<u8>, Option<String>)> = Vec::new();
    let mut roots = 0usize;
    let mut assertions = 0usize;
    let mut assertion_signed = false;
    let mut signatures = 0usize;
    // The reference the open signature must make, and how many it made.
    let mut expected_reference: Option<String> = None;
    let mut references = 0usize;
    loop {
        let event = reader
            .read_event()
            .map_err(|e| format!("the response is not well-formed XML: {e}"))?;
        let (start, empty) = match &event {
            Event::Start(e) => (Some(e.clone()), false),
            Event::Empty(e) => (Some(e.clone()), true),
            _ => (None, false),
        };
        if let Some(e) = start {
            let local = e.local_name().as_ref().to_vec();
            let parent = stack.last().map(|(name, _)| name.as_slice());
            if stack.is_empty() {
                roots += 1;
                if local != b"Response" {
                    return Err("the document is not a SAML Response".into());
                }
            }
            match local.as_slice() {
                b"Assertion" => assertions += 1,
                b"EncryptedAssertion" => {
                    return Err("encrypted assertions are not accepted".into());
                }
                b"Signature" => {
                    signatures += 1;
                    let (parent_name, parent_id) = stack
                        .last()
                        .map(|(n, id)| (n.as_slice(), id.clone()))
                        .unwrap_or((b"", None));
                    if signatures > 2 || !matches!(parent_name, b"Response" | b"Assertion") {
                        return Err("a signature where none belongs".into());
                    }
                    if parent_name == b"Assertion" {
                        assertion_signed = true;
                    }
                    expected_reference = Some(format!("#{}", parent_id.unwrap_or_default()));
                    references = 0;
                }
                b"Reference" if parent == Some(b"SignedInfo") => {
                    references += 1;
                    if references > 1
                        || attribute(&e, b"URI").as_deref() != expected_reference.as_deref()
                    {
                        return Err(
                            "a signature refers to something other than its own element".into()
                        );
                    }
                }
                b"Transform" | b"CanonicalizationMethod" => {
                    let algorithm = attribute(&e, b"Algorithm").unwrap_or_default();
                    if !ALLOWED_TRANSFORMS.contains(&algorithm.as_str()) {
                        return Err(format!("the transform {algorithm} is not accepted"));
                    }
                }
                b"Object" | b"Manifest" | b"RetrievalMethod" | b"XPath" | b"XSLT" => {
                    return Err("the signature holds elements that are not accepted".into());
                }
                _ => {}
            }
            if !empty {
                stack.push((local, attribute(&e, b"ID")));
            }
        }
        match event {
            Event::End(_) => {
                stack.pop();
            }
            Event::DocType(_) => return Err("the response: a DTD is not allowed".into()),
            Event::Comment(_) => return Err("the response contains XML comments".into()),
            Event::PI(_) => {
                return Err("the response contains a processing instruction".into());
            }
            Event::Eof => break,
            _ => {}
        }
    }
    if roots != 1 {
        return Err("the response has more than one root element".into());
    }
    if assertions != 1 {
        return Err(format!(
            "the response holds {assertions} assertions; exactly one is accepted"
        ));
    }
    if !assertion_signed {
        return Err("the assertion is not signed itself".into());
    }
    Ok(())
}

/// Only UTF-8, as declared (another declared encoding could hide markup from these checks).
fn check_encoding(xml: &str) -> Result<(), String> {
    if xml.contains('\0') {
        return Err("the response contains NUL characters".into());
    }
    if let Some(rest) = xml.trim_start_matches('\u{feff}').strip_prefix("<?xml")
        && let Some(declaration) = rest.split("?>").next()
        && let Some(at) = declaration.find("encoding")
    {
        let value = declaration[at + "encoding".len()..]
            .trim_start_matches([' ', '='])
            .trim_matches(|c| c == '"' || c == '\'' || c == ' ');
        let value = value.split(['"', '\'']).next().unwrap_or_default();
        if !value.eq_ignore_ascii_case("utf-8") {
            return Err(format!(
                "the response's encoding {value} is not accepted (UTF-8 only)"
            ));
        }
    }
    Ok(())
}

/// The Response's own fields, signed or not, must agree with this login: Destination (this
/// provider's ACS), InResponseTo (this login's request), Issuer (the IdP) and a Success status.
fn check_unsigned_response(
    xml: &str,
    sp: &ServiceProvider,
    metadata: &EntityDescriptor,
    request_id: &str,
) -> Result<(), String> {
    let response: samael::schema::Response = xml
        .parse()
        .map_err(|_| "the response is not a SAML Response".to_owned())?;
    if response.destination.as_deref() != Some(sp.acs_url.as_str()) {
        return Err(format!(
            "the response's Destination is not this provider's ({})",
            sp.acs_url
        ));
    }
    if response.in_response_to.as_deref() != Some(request_id) {
        return Err("the response answers another request (InResponseTo)".into());
    }
    if let Some(issuer) = response.issuer.as_ref().and_then(|i| i.value.as_deref())
        && Some(issuer) != metadata.entity_id.as_deref()
    {
        return Err("the response's Issuer is not the identity provider".into());
    }
    let status = response
        .status
        .as_ref()
        .and_then(|s| s.status_code.value.as_deref());
    if status != Some("urn:oasis:names:tc:SAML:2.0:status:Success") {
        return Err(format!(
            "the identity provider did not sign you in (status {})",
            status.unwrap_or("missing")
        ));
    }
    Ok(())
}

/// This service provider's metadata (entity id, signing certificate, the ACS for HTTP-POST;
/// no single logout).
pub fn sp_metadata(sp: &ServiceProvider) -> Result<String, SamlError> {
    let der = openssl::x509::X509::from_pem(sp.cert_pem.as_bytes())
        .and_then(|c| c.to_der())
        .map_err(|e| SamlError::Internal(format!("the service provider's certificate: {e}")))?;
    let cert = base64::engine::general_purpose::STANDARD.encode(der);
    Ok(format!(
        r#"<?xml version="1.0" encoding="UTF-8"?>
<md:EntityDescriptor xmlns:md="urn:oasis:names:tc:SAML:2.0:metadata" entityID="{entity}">
  <md:SPSSODescriptor AuthnRequestsSigned="true" WantAssertionsSigned="true" protocolSupportEnumeration="urn:oasis:names:tc:SAML:2.0:protocol">
    <md:KeyDescriptor use="signing">
      <ds:KeyInfo xmlns:ds="http://www.w3.org/2000/09/xmldsig#"><ds:X509Data><ds:X509Certificate>{cert}</ds:X509Certificate></ds:X509Data></ds:KeyInfo>
    </md:KeyDescriptor>
    <md:AssertionConsumerService Binding="urn:oasis:names:tc:SAML:2.0:bindings:HTTP-POST" Location="{acs}" index="0" isDefault="true"/>
  </md:SPSSODescriptor>
</md:EntityDescriptor>
"#,
        entity = xml_attribute(&sp.entity_id),
        acs = xml_attribute(&sp.acs_url),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metadata_without_a_signing_certificate_or_with_a_dtd_is_refused() {
        let unsigned = r#"<md:EntityDescriptor xmlns:md="urn:oasis:names:tc:SAML:2.0:metadata" entityID="https://idp.example/metadata">
  <md:IDPSSODescriptor protocolSupportEnumeration="urn:oasis:names:tc:SAML:2.0:protocol">
    <md:SingleSignOnService Binding="urn:oasis:names:tc:SAML:2.0:bindings:HTTP-Redirect" Location="https://idp.example/sso"/>
  </md:IDPSSODescriptor>
</md:EntityDescriptor>"#;
        let e = check_metadata(unsigned).unwrap_err();
        assert!(
            matches!(&e, SamlError::InvalidMetadata(t) if t.contains("no signing certificate")),
            "{e:?}"
        );
        let dtd = format!("<!DOCTYPE x [<!ENTITY a \"b\">]>{unsigned}");
        let e = check_metadata(&dtd).unwrap_err();
        assert!(
            matches!(&e, SamlError::InvalidMetadata(t) if t.contains("DTD")),
            "{e:?}"
        );
        assert!(check_metadata("not xml").is_err());
    }

    #[test]
    fn the_replay_cache_refuses_an_id_until_it_expires() {
        let cache = ReplayCache::default();
        assert!(cache.spend("a", 100, 10));
        assert!(!cache.spend("a", 100, 50));
        assert!(cache.spend("a", 200, 101));
        assert!(cache.spend("b", 100, 10));
    }

    #[test]
    fn keys_make_service_provider_metadata() {
        let (key_pem, cert_pem) = generate_keys("infrapilot test").unwrap();
        assert!(key_pem.contains("PRIVATE KEY"));
        let sp = ServiceProvider {
            entity_id: "https://host.example/api/v1/auth/sso/x/metadata".into(),
            acs_url: "https://host.example/api/v1/auth/sso/x/callback".into(),
            key_pem,
            cert_pem,
        };
        let xml = sp_metadata(&sp).unwrap();
        assert!(
            xml.contains("entityID=\"https://host.example/api/v1/auth/sso/x/metadata\""),
            "{xml}"
        );
        assert!(
            xml.contains("https://host.example/api/v1/auth/sso/x/callback"),
            "{xml}"
        );
        assert!(xml.contains("X509Certificate"), "{xml}");
    }
}
