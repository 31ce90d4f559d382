//! SAML sign-in against a real identity provider (pysaml2 with Debian's xmlsec1, started by
//! `tests/peers/start-saml-idp.sh`) through the real `infrapilot.saml` plugin and the host's
//! `saml` capability: metadata without a signing certificate refused, the provider's own
//! service-provider metadata, a signed AuthnRequest, the IdP's signed response posted to the
//! callback, JIT with the role from its groups; then what must fail: the same response again
//! (another login's request, or the spent login), a tampered attribute, a comment in the NameID,
//! a DTD.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use axum::http::{StatusCode, header};
use base64::Engine;
use common::TestApp;
use common::sso::{exchange, landing, sso_error, start};
use infrapilot_store::testing::backends;
use serde_json::json;

const PLUGIN: &str = "infrapilot.saml";

/// A pysaml2 IdP of this test, stopped on drop.
struct Idp {
    dir: PathBuf,
    port: u16,
    pid: String,
}

impl Idp {
    /// Starts the IdP for one service provider; `again` restarts one on its key and port.
    fn start(sp_entity_id: &str, acs_url: &str, again: Option<(&Path, u16)>) -> Idp {
        let envs: Vec<(&str, String)> = match again {
            Some((dir, port)) => vec![
                ("IDP_DIR", dir.display().to_string()),
                ("IDP_PORT", port.to_string()),
            ],
            None => Vec::new(),
        };
        let started = common::peers::start("start-saml-idp.sh", &[sp_entity_id, acs_url], &envs);
        let (dir, var) = (started.dir.clone(), |name: &str| started.var(name));
        Idp {
            port: var("IDP_PORT").parse().unwrap(),
            pid: var("IDP_PID"),
            dir,
        }
    }

    fn get(url: &str) -> String {
        let out = Command::new("curl")
            .args(["-fsS", "--max-time", "10", url])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "GET {url}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    }

    fn metadata(&self) -> String {
        Idp::get(&format!("http://127.0.0.1:{}/metadata", self.port))
    }

    /// How later answers say the person signed in (their `AuthnContextClassRef`).
    fn set_authn_class(&self, class: &str) {
        let out = Command::new("curl")
            .args(["-fsS", "--max-time", "10", "--data-binary", class])
            .arg(format!(
                "http://127.0.0.1:{}/control/authn-class",
                self.port
            ))
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// Stops it, keeping its directory (key and certificate) for a restart.
    fn stop(&mut self) {
        let _ = Command::new("kill").arg(&self.pid).status();
        // Wait for the port to be free again.
        for _ in 0..50 {
            if std::net::TcpStream::connect(("127.0.0.1", self.port)).is_err() {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
    }
}

impl Drop for Idp {
    fn drop(&mut self) {
        let _ = Command::new("kill").arg(&self.pid).status();
    }
}

/// The value of the hidden input `name` in the IdP's auto-submitting form.
fn form_value(html: &str, name: &str) -> String {
    let marker = format!("name=\"{name}\" value=\"");
    let at = html
        .find(&marker)
        .unwrap_or_else(|| panic!("no {name} in {html}"))
        + marker.len();
    let value = &html[at..at + html[at..].find('"').unwrap()];
    value
        .replace("&#x3D;", "=")
        .replace("&#43;", "+")
        .replace("&amp;", "&")
}

/// Posts `saml_response` to the provider's callback (the IdP's HTTP-POST binding) from the
/// browser with `cookie`: where the host sends the browser.
async fn post_response(
    app: &TestApp,
    provider: &str,
    cookie: &str,
    saml_response: &str,
    relay_state: &str,
) -> String {
    let body = form_urlencoded::Serializer::new(String::new())
        .append_pair("SAMLResponse", saml_response)
        .append_pair("RelayState", relay_state)
        .finish();
    let r = app
        .send_with_headers(
            "POST",
            &format!("/api/v1/auth/sso/{provider}/callback"),
            None,
            Some("application/x-www-form-urlencoded"),
            &[("cookie", cookie)],
            body.into_bytes(),
        )
        .await;
    landing(&r)
}

/// A login started at the host and answered by the IdP: the browser's cookie, the response
/// and the relay state the IdP posts back.
async fn idp_answer(app: &TestApp, provider: &str) -> (String, String, String) {
    let browser = start(app, provider).await;
    assert!(
        !browser.param("Signature").is_empty(),
        "the request is signed"
    );
    assert!(
        browser.param("SigAlg").ends_with("rsa-sha256"),
        "{}",
        browser.param("SigAlg")
    );
    let query = form_urlencoded::Serializer::new(String::new())
        .extend_pairs(browser.authorize.iter())
        .finish();
    let html = Idp::get(&format!(
        "{}?{query}",
        browser.location.split('?').next().unwrap()
    ));
    (
        browser.cookie,
        form_value(&html, "SAMLResponse"),
        form_value(&html, "RelayState"),
    )
}

/// A change made to a genuine response after the IdP signed it.
type Forgery = Box<dyn Fn(String) -> String>;

fn rewrite(saml_response: &str, change: impl Fn(String) -> String) -> String {
    let engine = base64::engine::general_purpose::STANDARD;
    let xml = String::from_utf8(engine.decode(saml_response).unwrap()).unwrap();
    let changed = change(xml.clone());
    assert_ne!(changed, xml, "the change applies");
    engine.encode(changed)
}

#[tokio::test(flavor = "multi_thread")]
async fn saml_sign_in_through_a_real_identity_provider_and_forged_answers_refused() {
    for backend in backends() {
        // The IdP's metadata first (the service provider's entity id exists only once the
        // provider does), then the IdP again on the same key and port for that provider.
        let mut idp = Idp::start(
            "https://placeholder.test/metadata",
            "http://127.0.0.1:1/acs",
            None,
        );
        let idp_metadata = idp.metadata();
        idp.stop();
        let (app, admin, _) =
            common::sso::licensed_app(backend, "infrapilot_saml_sso", PLUGIN).await;
        let body = |metadata: &str| {
            json!({"plugin": PLUGIN, "name": "Corp SAML",
                "settings": {"idp_metadata": metadata, "emails_verified": true},
                "group_roles": [{"group": "admins", "role": "admin"}, {"group": "devs", "role": "operator"}]})
        };
        // Metadata without a signing certificate would let unsigned responses through: refused.
        let start_key = idp_metadata
            .find("<ns0:KeyDescriptor")
            .expect("a KeyDescriptor");
        let end_key =
            idp_metadata.find("</ns0:KeyDescriptor>").unwrap() + "</ns0:KeyDescriptor>".len();
        let unsigned = format!("{}{}", &idp_metadata[..start_key], &idp_metadata[end_key..]);
        for (bad, why) in [
            (unsigned, "no signing certificate"),
            (
                format!("<!DOCTYPE x [<!ENTITY e \"x\">]>{idp_metadata}"),
                "DTD",
            ),
            ("<not-metadata/>".to_owned(), "entityID"),
        ] {
            let r =
                common::sso::provider_refused(&app, &admin, body(&bad), "settings.idp_metadata")
                    .await;
            assert!(r.body.to_string().contains(why), "{why}: {:?}", r.body);
        }
        let r = app
            .post("/api/v1/sso/providers", Some(&admin), body(&idp_metadata))
            .await;
        assert_eq!(r.status, StatusCode::CREATED, "{:?}", r.body);
        let provider = r.body["id"].as_str().unwrap().to_owned();
        let entity_id = r.body["saml_metadata_url"].as_str().unwrap().to_owned();
        let acs_url = r.body["callback_url"].as_str().unwrap().to_owned();
        // The provider's own metadata: its entity id, ACS and certificate (never its key).
        let path = entity_id
            .split_once("/api/")
            .map(|(_, p)| format!("/api/{p}"))
            .unwrap();
        let r = app.call("GET", &path, None, None).await;
        assert_eq!(r.status, StatusCode::OK);
        assert_eq!(
            r.headers[header::CONTENT_TYPE],
            "application/samlmetadata+xml"
        );
        let sp_metadata = String::from_utf8(r.raw.clone()).unwrap();
        assert!(
            sp_metadata.contains(&format!("entityID=\"{entity_id}\"")),
            "{sp_metadata}"
        );
        assert!(sp_metadata.contains(&acs_url) && sp_metadata.contains("X509Certificate"));
        assert!(!sp_metadata.contains("PRIVATE"));
        let idp = Idp::start(&entity_id, &acs_url, Some((&idp.dir, idp.port)));

        // The whole login: a signed request, the IdP's signed answer posted to the callback,
        // a person made just in time, an admin through "admins".
        let (cookie, response, relay) = idp_answer(&app, &provider).await;
        let location = post_response(&app, &provider, &cookie, &response, &relay).await;
        let code = location
            .strip_prefix("/login/sso#")
            .unwrap_or_else(|| panic!("no code: {location}"));
        let (status, tokens) = exchange(&app, &cookie, code).await;
        assert_eq!(status, StatusCode::OK, "{tokens:?}");
        let me = app
            .get("/api/v1/auth/me", tokens["access_token"].as_str().unwrap())
            .await;
        assert_eq!(me.body["role"], "admin", "{:?}", me.body);
        assert_eq!(me.body["email"], "alice@example.test", "{:?}", me.body);

        // The same response again: from the spent login, and for another login's request.
        let again = post_response(&app, &provider, &cookie, &response, &relay).await;
        assert!(sso_error(&again).contains("used already"), "{again}");
        let (cookie2, _, relay2) = idp_answer(&app, &provider).await;
        let replayed = post_response(&app, &provider, &cookie2, &response, &relay2).await;
        let why = sso_error(&replayed);
        assert!(
            why.contains("InResponseTo") || why.contains("used already"),
            "{why}"
        );

        // A second factor required at the identity provider: its authentication context
        // (signed with the assertion) decides. Password only: refused; two factors: in.
        let r = app
            .call(
                "PATCH",
                &format!("/api/v1/sso/providers/{provider}"),
                Some(&admin),
                Some(json!({"mfa": "idp"})),
            )
            .await;
        assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
        let (cookie, response, relay) = idp_answer(&app, &provider).await;
        let location = post_response(&app, &provider, &cookie, &response, &relay).await;
        assert!(sso_error(&location).contains("second factor"), "{location}");
        idp.set_authn_class("urn:oasis:names:tc:SAML:2.0:ac:classes:MobileTwoFactorContract");
        let (cookie, response, relay) = idp_answer(&app, &provider).await;
        let location = post_response(&app, &provider, &cookie, &response, &relay).await;
        assert!(location.starts_with("/login/sso#"), "{location}");
        idp.set_authn_class("urn:oasis:names:tc:SAML:2.0:ac:classes:PasswordProtectedTransport");
        // A class changed after signing does not count (the signature no longer holds).
        let (cookie, response, relay) = idp_answer(&app, &provider).await;
        let forged = rewrite(&response, |x: String| {
            x.replace(
                "classes:PasswordProtectedTransport",
                "classes:MobileTwoFactorContract",
            )
        });
        let location = post_response(&app, &provider, &cookie, &forged, &relay).await;
        assert!(sso_error(&location).contains("does not hold"), "{location}");

        // Forged answers to fresh logins.
        let forgeries: Vec<(&str, &str, Forgery)> = vec![
            (
                "an attribute changed after signing",
                "does not hold",
                Box::new(|x: String| x.replace(">devs<", ">root<")),
            ),
            (
                "a comment inside the NameID",
                "comments",
                Box::new(|x: String| {
                    x.replacen("alice@example.test<", "alice@example.test<!---->.evil<", 1)
                }),
            ),
            (
                "a DTD",
                "DTD",
                Box::new(|x: String| {
                    let body = x.trim_start_matches(|c| c != '<');
                    let body = if body.starts_with("<?xml") {
                        &body[body.find("?>").unwrap() + 2..]
                    } else {
                        body
                    };
                    format!("<!DOCTYPE r [<!ENTITY e SYSTEM \"file:///etc/passwd\">]>{body}")
                }),
            ),
        ];
        for (what, reason, change) in forgeries {
            let (cookie, response, relay) = idp_answer(&app, &provider).await;
            let forged = rewrite(&response, change);
            let location = post_response(&app, &provider, &cookie, &forged, &relay).await;
            assert!(
                location.starts_with("error: ") && location.contains(reason),
                "{what}: {location}"
            );
        }
        let audit = app.get("/api/v1/audit?limit=500", &admin).await;
        let failures = audit.body["events"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|e| e["action"] == "sso.login" && e["outcome"] == "failure")
            .count();
        assert!(
            failures >= 4,
            "{failures} refusals audited: {:?}",
            audit.body
        );
    }
}

// ---- the forged-response corpus -------------------------------------------------------------

/// What one forged response is made of: the fields of a response to the login's request,
/// which of its parts are signed (by the IdP's key, or another), and what is done after.
#[derive(Clone)]
struct Forge {
    audience: Option<String>,
    recipient: String,
    destination: String,
    in_response_to: String,
    confirmation_in_response_to: String,
    issuer: String,
    /// Seconds from now.
    issued: i64,
    not_before: i64,
    not_on_or_after: i64,
    status: &'static str,
    method: &'static str,
    name_id: String,
    groups: &'static str,
    sign_assertion: bool,
    sign_response: bool,
    /// Sign with a key the IdP's metadata does not name (its certificate in KeyInfo).
    foreign_key: bool,
    sha1: bool,
    /// Applied to the signed XML.
    after: fn(String) -> String,
}

fn keep(x: String) -> String {
    x
}

fn iso(offset: i64) -> String {
    (chrono::Utc::now() + chrono::Duration::seconds(offset))
        .format("%Y-%m-%dT%H:%M:%SZ")
        .to_string()
}

fn signature_template(reference: &str, sha1: bool) -> String {
    let (method, digest) = if sha1 {
        (
            "http://www.w3.org/2000/09/xmldsig#rsa-sha1",
            "http://www.w3.org/2000/09/xmldsig#sha1",
        )
    } else {
        (
            "http://www.w3.org/2001/04/xmldsig-more#rsa-sha256",
            "http://www.w3.org/2001/04/xmlenc#sha256",
        )
    };
    format!(
        r##"<ds:Signature xmlns:ds="http://www.w3.org/2000/09/xmldsig#"><ds:SignedInfo><ds:CanonicalizationMethod Algorithm="http://www.w3.org/2001/10/xml-exc-c14n#"/><ds:SignatureMethod Algorithm="{method}"/><ds:Reference URI="#{reference}"><ds:Transforms><ds:Transform Algorithm="http://www.w3.org/2000/09/xmldsig#enveloped-signature"/><ds:Transform Algorithm="http://www.w3.org/2001/10/xml-exc-c14n#"/></ds:Transforms><ds:DigestMethod Algorithm="{digest}"/><ds:DigestValue></ds:DigestValue></ds:Reference></ds:SignedInfo><ds:SignatureValue></ds:SignatureValue><ds:KeyInfo><ds:X509Data/></ds:KeyInfo></ds:Signature>"##
    )
}

/// Signs the element with ID `id` (of `element`, a namespaced element name for xmlsec1) in
/// `xml` with the key and certificate in `key_dir`.
fn xmlsec_sign(xml: &str, element: &str, key_dir: &Path) -> String {
    let work = tempfile_dir();
    let input = work.join("in.xml");
    let output = work.join("out.xml");
    std::fs::write(&input, xml).unwrap();
    let out = Command::new("xmlsec1")
        .arg("--sign")
        .arg("--privkey-pem")
        .arg(format!(
            "{},{}",
            key_dir.join("idp.key").display(),
            key_dir.join("idp.crt").display()
        ))
        .arg("--id-attr:ID")
        .arg(element)
        .arg("--output")
        .arg(&output)
        .arg(&input)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "xmlsec1 --sign: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let signed = std::fs::read_to_string(&output).unwrap();
    let _ = std::fs::remove_dir_all(&work);
    signed
}

fn tempfile_dir() -> PathBuf {
    let dir = std::env::temp_dir().join(format!("saml-forge-{}", uuid::Uuid::new_v4()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// A key and self-signed certificate the IdP's metadata does not name.
fn foreign_key_dir() -> PathBuf {
    let dir = tempfile_dir();
    let out = Command::new("openssl")
        .args([
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "2",
            "-subj",
            "/CN=attacker",
        ])
        .arg("-keyout")
        .arg(dir.join("idp.key"))
        .arg("-out")
        .arg(dir.join("idp.crt"))
        .output()
        .unwrap();
    assert!(out.status.success());
    dir
}

impl Forge {
    fn genuine(request_id: &str, acs: &str, audience: &str, idp: &str) -> Forge {
        Forge {
            audience: Some(audience.to_owned()),
            recipient: acs.to_owned(),
            destination: acs.to_owned(),
            in_response_to: request_id.to_owned(),
            confirmation_in_response_to: request_id.to_owned(),
            issuer: idp.to_owned(),
            issued: 0,
            not_before: -60,
            not_on_or_after: 300,
            status: "urn:oasis:names:tc:SAML:2.0:status:Success",
            method: "urn:oasis:names:tc:SAML:2.0:cm:bearer",
            name_id: "carol@example.test".into(),
            groups: "devs",
            sign_assertion: true,
            sign_response: false,
            foreign_key: false,
            sha1: false,
            after: keep,
        }
    }

    fn assertion(&self, id: &str, signature: &str) -> String {
        let audience = self
            .audience
            .as_ref()
            .map(|a| format!("<saml:AudienceRestriction><saml:Audience>{a}</saml:Audience></saml:AudienceRestriction>"))
            .unwrap_or_default();
        format!(
            r#"<saml:Assertion xmlns:saml="urn:oasis:names:tc:SAML:2.0:assertion" ID="{id}" Version="2.0" IssueInstant="{issued}"><saml:Issuer>{issuer}</saml:Issuer>{signature}<saml:Subject><saml:NameID Format="urn:oasis:names:tc:SAML:1.1:nameid-format:emailAddress">{name_id}</saml:NameID><saml:SubjectConfirmation Method="{method}"><saml:SubjectConfirmationData InResponseTo="{irt}" NotOnOrAfter="{after}" Recipient="{recipient}"/></saml:SubjectConfirmation></saml:Subject><saml:Conditions NotBefore="{before}" NotOnOrAfter="{after}">{audience}</saml:Conditions><saml:AuthnStatement AuthnInstant="{issued}" SessionIndex="_s{id}"><saml:AuthnContext><saml:AuthnContextClassRef>urn:oasis:names:tc:SAML:2.0:ac:classes:Password</saml:AuthnContextClassRef></saml:AuthnContext></saml:AuthnStatement><saml:AttributeStatement><saml:Attribute Name="email"><saml:AttributeValue>{name_id}</saml:AttributeValue></saml:Attribute><saml:Attribute Name="groups"><saml:AttributeValue>{groups}</saml:AttributeValue></saml:Attribute></saml:AttributeStatement></saml:Assertion>"#,
            issued = iso(self.issued),
            issuer = self.issuer,
            name_id = self.name_id,
            method = self.method,
            irt = self.confirmation_in_response_to,
            after = iso(self.not_on_or_after),
            recipient = self.recipient,
            before = iso(self.not_before),
            groups = self.groups,
        )
    }

    /// The response XML, signed as asked, then `after` applied.
    fn build(&self, key_dir: &Path) -> String {
        let n = uuid::Uuid::new_v4().simple().to_string();
        let (assertion_id, response_id) = (format!("_a{n}"), format!("_r{n}"));
        let signing_dir = if self.foreign_key {
            foreign_key_dir()
        } else {
            key_dir.to_path_buf()
        };
        let assertion_signature = if self.sign_assertion {
            signature_template(&assertion_id, self.sha1)
        } else {
            String::new()
        };
        let xml = format!(
            r#"<?xml version="1.0" encoding="UTF-8"?><samlp:Response xmlns:samlp="urn:oasis:names:tc:SAML:2.0:protocol" xmlns:saml="urn:oasis:names:tc:SAML:2.0:assertion" ID="{response_id}" Version="2.0" IssueInstant="{issued}" Destination="{destination}" InResponseTo="{irt}"><saml:Issuer>{issuer}</saml:Issuer><samlp:Status><samlp:StatusCode Value="{status}"/></samlp:Status>{assertion}</samlp:Response>"#,
            issued = iso(self.issued),
            destination = self.destination,
            irt = self.in_response_to,
            issuer = self.issuer,
            status = self.status,
            assertion = self.assertion(&assertion_id, &assertion_signature),
        );
        let mut xml = xml;
        if self.sign_assertion {
            xml = xmlsec_sign(
                &xml,
                "urn:oasis:names:tc:SAML:2.0:assertion:Assertion",
                &signing_dir,
            );
        }
        if self.sign_response {
            // The response's signature goes in after the assertion's is made (xmlsec1 signs the
            // first template it finds).
            let issuer_end = xml.find("</saml:Issuer>").unwrap() + "</saml:Issuer>".len();
            xml.insert_str(issuer_end, &signature_template(&response_id, self.sha1));
            xml = xmlsec_sign(
                &xml,
                "urn:oasis:names:tc:SAML:2.0:protocol:Response",
                &signing_dir,
            );
        }
        (self.after)(xml)
    }
}

/// The request id of a login's signed redirect (its deflated `SAMLRequest`).
fn request_id(browser: &common::sso::Browser) -> String {
    use std::io::Read;
    let deflated = base64::engine::general_purpose::STANDARD
        .decode(browser.param("SAMLRequest"))
        .unwrap();
    let mut xml = String::new();
    flate2::read::DeflateDecoder::new(&deflated[..])
        .read_to_string(&mut xml)
        .unwrap();
    let at = xml.find(" ID=\"").unwrap() + 5;
    xml[at..at + xml[at..].find('"').unwrap()].to_owned()
}

/// The signed XML with its (first) reference pointing at `uri`.
fn retarget(xml: String, uri: &str) -> String {
    let at = xml.find("<ds:Reference URI=\"").unwrap() + "<ds:Reference URI=\"".len();
    let end = at + xml[at..].find('"').unwrap();
    format!("{}{uri}{}", &xml[..at], &xml[end..])
}

/// The first `<ds:Signature>…</ds:Signature>` of `xml`.
fn signature_of(xml: &str) -> String {
    let start = xml.find("<ds:Signature").unwrap();
    let end = xml[start..].find("</ds:Signature>").unwrap() + start + "</ds:Signature>".len();
    xml[start..end].to_owned()
}

/// The signed Response element (without the XML declaration) and its own signature.
fn response_and_signature(xml: &str) -> (String, String) {
    let start = xml.find("<samlp:Response").unwrap();
    let body = xml[start..].to_owned();
    let signature = signature_of(&body);
    (body, signature)
}

/// A copy of the Response `body` with another ID, no signature and an evil assertion.
fn evil_response(body: &str) -> String {
    let signature = signature_of(body);
    let (assertion, _) = signed_assertion(body);
    let at = body.find(" ID=\"").unwrap() + 5;
    let end = at + body[at..].find('"').unwrap();
    let copy = format!("{}_evil_response{}", &body[..at], &body[end..]);
    copy.replacen(&signature, "", 1)
        .replacen(&assertion, &evil_assertion("_evil"), 1)
}

/// The evil twin of a signed assertion for the wrapping attacks: unsigned, an admin.
fn evil_assertion(id: &str) -> String {
    let mut forge = Forge::genuine("x", "x", "x", "x");
    forge.name_id = "mallory@example.test".into();
    forge.groups = "admins";
    forge.sign_assertion = false;
    forge.assertion(id, "")
}

/// The signed `<saml:Assertion …>…</saml:Assertion>` of `xml` and its ID.
fn signed_assertion(xml: &str) -> (String, String) {
    let start = xml.find("<saml:Assertion").unwrap();
    let end = xml.rfind("</saml:Assertion>").unwrap() + "</saml:Assertion>".len();
    let element = xml[start..end].to_owned();
    let at = element.find(" ID=\"").unwrap() + 5;
    let id = element[at..at + element[at..].find('"').unwrap()].to_owned();
    (element, id)
}

#[tokio::test(flavor = "multi_thread")]
async fn a_corpus_of_forged_saml_responses_is_refused_and_the_genuine_one_accepted() {
    let backend = backends().into_iter().next().unwrap();
    let mut idp = Idp::start(
        "https://placeholder.test/metadata",
        "http://127.0.0.1:1/acs",
        None,
    );
    let idp_metadata = idp.metadata();
    idp.stop();
    let idp_entity = format!("http://127.0.0.1:{}/metadata", idp.port);
    let (mut app, admin, _) =
        common::sso::licensed_app(backend, "infrapilot_saml_sso", PLUGIN).await;
    let r = app
        .post(
            "/api/v1/sso/providers",
            Some(&admin),
            json!({"plugin": PLUGIN, "name": "Corp SAML",
                "settings": {"idp_metadata": idp_metadata, "emails_verified": true},
                "group_roles": [{"group": "admins", "role": "admin"}, {"group": "devs", "role": "viewer"}]}),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{:?}", r.body);
    let provider = r.body["id"].as_str().unwrap().to_owned();
    let audience = r.body["saml_metadata_url"].as_str().unwrap().to_owned();
    let acs = r.body["callback_url"].as_str().unwrap().to_owned();
    let key_dir = idp.dir.clone();

    // One fresh login per case: (what, how the response is forged from the genuine one).
    type Case = (&'static str, &'static str, Box<dyn Fn(&mut Forge)>);
    let cases: Vec<Case> = vec![
        (
            "wrong audience",
            "AudienceRequirement",
            Box::new(|f| f.audience = Some("https://other-sp.test/metadata".into())),
        ),
        (
            "no audience restriction",
            "not restricted to this service provider",
            Box::new(|f| f.audience = None),
        ),
        (
            "wrong recipient",
            "Recipient does not match",
            Box::new(|f| f.recipient = "https://evil.test/acs".into()),
        ),
        (
            "wrong destination",
            "Destination is not this provider",
            Box::new(|f| f.destination = "https://evil.test/acs".into()),
        ),
        (
            "assertion answers another request",
            "InResponseTo",
            Box::new(|f| f.confirmation_in_response_to = "_other".into()),
        ),
        (
            "response answers another request",
            "answers another request",
            Box::new(|f| f.in_response_to = "_other".into()),
        ),
        (
            "unsolicited (no InResponseTo)",
            "InResponseTo",
            Box::new(|f| {
                f.in_response_to = String::new();
                f.confirmation_in_response_to = String::new();
            }),
        ),
        (
            "expired",
            "expired",
            Box::new(|f| {
                f.not_on_or_after = -600;
                f.issued = -900;
                f.not_before = -960;
            }),
        ),
        (
            "not yet valid",
            "not valid until",
            Box::new(|f| f.not_before = 900),
        ),
        (
            "issued an hour ago",
            "expired",
            Box::new(|f| f.issued = -3600),
        ),
        (
            "another issuer",
            "Issuer does not match",
            Box::new(|f| f.issuer = "https://evil-idp.test/metadata".into()),
        ),
        (
            "not a success",
            "did not sign you in",
            Box::new(|f| f.status = "urn:oasis:names:tc:SAML:2.0:status:Responder"),
        ),
        (
            "not a bearer confirmation",
            "bearer",
            Box::new(|f| f.method = "urn:oasis:names:tc:SAML:2.0:cm:holder-of-key"),
        ),
        (
            "signed by another key",
            "must be signed",
            Box::new(|f| f.foreign_key = true),
        ),
        (
            "signed by another key, response and assertion",
            "must be signed",
            Box::new(|f| {
                f.foreign_key = true;
                f.sign_response = true;
            }),
        ),
        (
            "signed with RSA-SHA1",
            "must be signed",
            Box::new(|f| f.sha1 = true),
        ),
        (
            "unsigned",
            "not signed itself",
            Box::new(|f| f.sign_assertion = false),
        ),
        (
            "an attribute changed after signing",
            "must be signed",
            Box::new(|f| f.after = |x| x.replace(">devs<", ">admins<")),
        ),
        (
            "the NameID changed after signing",
            "must be signed",
            Box::new(|f| {
                f.after = |x| {
                    x.replace(
                        ">carol@example.test</saml:NameID>",
                        ">mallory@example.test</saml:NameID>",
                    )
                }
            }),
        ),
        (
            "a comment truncating the NameID",
            "comments",
            Box::new(|f| {
                f.after = |x| {
                    x.replacen(
                        "carol@example.test</saml:NameID>",
                        "carol@example.test<!---->.evil.test</saml:NameID>",
                        1,
                    )
                }
            }),
        ),
        (
            "a DTD with an external entity",
            "DTD",
            Box::new(|f| {
                f.after = |x| {
                    x.replacen("<?xml version=\"1.0\" encoding=\"UTF-8\"?>", "<?xml version=\"1.0\"?><!DOCTYPE r [<!ENTITY x SYSTEM \"file:///etc/passwd\">]>", 1)
                }
            }),
        ),
        (
            "an unsigned second assertion in a signed response",
            "exactly one is accepted",
            Box::new(|f| {
                f.sign_response = true;
                f.sign_assertion = false;
                f.after = |x| {
                    x.replacen(
                        "</samlp:Response>",
                        &format!("{}</samlp:Response>", evil_assertion("_evil")),
                        1,
                    )
                };
            }),
        ),
        (
            "XSW3: an evil assertion before the signed one",
            "exactly one is accepted",
            Box::new(|f| {
                f.after = |x| {
                    x.replacen(
                        "<saml:Assertion",
                        &format!("{}<saml:Assertion", evil_assertion("_evil")),
                        1,
                    )
                }
            }),
        ),
        (
            "XSW: an evil assertion after the signed one",
            "exactly one is accepted",
            Box::new(|f| {
                f.after = |x| {
                    x.replacen(
                        "</samlp:Response>",
                        &format!("{}</samlp:Response>", evil_assertion("_evil")),
                        1,
                    )
                }
            }),
        ),
        (
            "XSW: an evil assertion with the signed one's ID, first",
            "exactly one is accepted",
            Box::new(|f| {
                f.after = |x| {
                    let (_, id) = signed_assertion(&x);
                    x.replacen(
                        "<saml:Assertion",
                        &format!("{}<saml:Assertion", evil_assertion(&id)),
                        1,
                    )
                }
            }),
        ),
        (
            "XSW: the signed assertion in an evil one's Advice",
            "exactly one is accepted",
            Box::new(|f| {
                f.after = |x| {
                    let (signed, _) = signed_assertion(&x);
                    let evil = evil_assertion("_evil").replacen(
                        "<saml:Conditions",
                        &format!("<saml:Advice>{signed}</saml:Advice><saml:Conditions"),
                        1,
                    );
                    x.replacen(&signed, &evil, 1)
                }
            }),
        ),
        (
            "XSW7: the signed assertion in the response's Extensions, an evil one in its place",
            "exactly one is accepted",
            Box::new(|f| {
                f.after = |x| {
                    let (signed, _) = signed_assertion(&x);
                    x.replacen(&signed, &evil_assertion("_evil"), 1).replacen(
                        "<samlp:Status>",
                        &format!("<samlp:Extensions>{signed}</samlp:Extensions><samlp:Status>"),
                        1,
                    )
                }
            }),
        ),
        (
            "XSW6: the signature moved into an evil assertion, the original in its Object",
            "refers to something other",
            Box::new(|f| {
                f.after = |x| {
                    let (signed, _) = signed_assertion(&x);
                    let sig_start = signed.find("<ds:Signature").unwrap();
                    let sig_end = signed.find("</ds:Signature>").unwrap() + "</ds:Signature>".len();
                    let signature = &signed[sig_start..sig_end];
                    let original = signed.replacen(signature, "", 1);
                    let moved = signature.replacen(
                        "</ds:Signature>",
                        &format!("<ds:Object>{original}</ds:Object></ds:Signature>"),
                        1,
                    );
                    let evil = evil_assertion("_evil").replacen(
                        "</saml:Issuer>",
                        &format!("</saml:Issuer>{moved}"),
                        1,
                    );
                    x.replacen(&signed, &evil, 1)
                }
            }),
        ),
        (
            "XSW: an evil assertion inside the signed one's Subject",
            "exactly one is accepted",
            Box::new(|f| {
                f.after = |x| {
                    x.replacen(
                        "<saml:Subject>",
                        &format!("<saml:Subject>{}", evil_assertion("_evil")),
                        1,
                    )
                }
            }),
        ),
        (
            "XSW: the signed assertion wrapped in an unknown element before an evil one",
            "exactly one is accepted",
            Box::new(|f| {
                f.after = |x| {
                    let (signed, _) = signed_assertion(&x);
                    x.replacen(
                        &signed,
                        &format!(
                            "<x:Wrapper xmlns:x=\"urn:evil\">{signed}</x:Wrapper>{}",
                            evil_assertion("_evil")
                        ),
                        1,
                    )
                }
            }),
        ),
        (
            "XSW: a second Response wrapping the signed one",
            "exactly one is accepted",
            Box::new(|f| {
                f.after = |x| {
                    let body = x.trim_start_matches("<?xml version=\"1.0\" encoding=\"UTF-8\"?>");
                    let evil = evil_assertion("_evil");
                    format!(
                        "<samlp:Response xmlns:samlp=\"urn:oasis:names:tc:SAML:2.0:protocol\" xmlns:saml=\"urn:oasis:names:tc:SAML:2.0:assertion\" ID=\"_outer\" Version=\"2.0\" IssueInstant=\"2026-01-01T00:00:00Z\"><samlp:Status><samlp:StatusCode Value=\"urn:oasis:names:tc:SAML:2.0:status:Success\"/></samlp:Status>{evil}<samlp:Extensions>{body}</samlp:Extensions></samlp:Response>"
                    )
                }
            }),
        ),
        (
            "XSW1: an evil response holding the signed one in its signature's Object",
            "refers to something other",
            Box::new(|f| {
                f.sign_response = true;
                f.after = |x| {
                    let (body, signature) = response_and_signature(&x);
                    evil_response(&body).replacen(
                        "</saml:Issuer>",
                        &format!(
                            "</saml:Issuer>{}",
                            signature.replacen(
                                "</ds:Signature>",
                                &format!("<ds:Object>{body}</ds:Object></ds:Signature>"),
                                1
                            )
                        ),
                        1,
                    )
                }
            }),
        ),
        (
            "XSW2: an evil response with the signed one beside its signature",
            "a signature where none belongs",
            Box::new(|f| {
                f.sign_response = true;
                f.after = |x| {
                    let (body, signature) = response_and_signature(&x);
                    evil_response(&body).replacen(
                        "</saml:Issuer>",
                        &format!("</saml:Issuer>{body}{signature}"),
                        1,
                    )
                }
            }),
        ),
        (
            "XSW4: the signed assertion a child of an evil one",
            "exactly one is accepted",
            Box::new(|f| {
                f.after = |x| {
                    let (signed, _) = signed_assertion(&x);
                    let evil = evil_assertion("_evil").replacen(
                        "</saml:Assertion>",
                        &format!("{signed}</saml:Assertion>"),
                        1,
                    );
                    x.replacen(&signed, &evil, 1)
                }
            }),
        ),
        (
            "XSW5: the signature moved into an evil assertion, the original appended unsigned",
            "refers to something other",
            Box::new(|f| {
                f.after = |x| {
                    let (signed, _) = signed_assertion(&x);
                    let signature = signature_of(&signed);
                    let evil = evil_assertion("_evil").replacen(
                        "</saml:Issuer>",
                        &format!("</saml:Issuer>{signature}"),
                        1,
                    );
                    let original = signed.replacen(&signature, "", 1);
                    x.replacen(&signed, &evil, 1).replacen(
                        "</samlp:Response>",
                        &format!("{original}</samlp:Response>"),
                        1,
                    )
                }
            }),
        ),
        (
            "XSW8: an evil assertion whose signature's Object holds the original, unsigned",
            "refers to something other",
            Box::new(|f| {
                f.after = |x| {
                    let (signed, _) = signed_assertion(&x);
                    let signature = signature_of(&signed);
                    let original = signed.replacen(&signature, "", 1);
                    let moved = signature.replacen(
                        "</ds:Signature>",
                        &format!("<ds:Object>{original}</ds:Object></ds:Signature>"),
                        1,
                    );
                    let evil = evil_assertion("_evil").replacen(
                        "</saml:Issuer>",
                        &format!("</saml:Issuer>{moved}"),
                        1,
                    );
                    x.replacen(&signed, &evil, 1)
                }
            }),
        ),
        (
            "a response signed, its assertion not",
            "not signed itself",
            Box::new(|f| {
                f.sign_response = true;
                f.sign_assertion = false;
            }),
        ),
        (
            "a reference to a local file",
            "refers to something other",
            Box::new(|f| f.after = |x| retarget(x, "file:///dev/zero")),
        ),
        (
            "a reference to another host",
            "refers to something other",
            Box::new(|f| f.after = |x| retarget(x, "http://169.254.169.254/latest/meta-data/")),
        ),
        (
            "a reference to the whole document",
            "refers to something other",
            Box::new(|f| f.after = |x| retarget(x, "")),
        ),
        (
            "an XPath transform",
            "is not accepted",
            Box::new(|f| {
                f.after = |x| {
                    x.replacen(
                        "http://www.w3.org/2000/09/xmldsig#enveloped-signature",
                        "http://www.w3.org/TR/1999/REC-xpath-19991116",
                        1,
                    )
                }
            }),
        ),
        (
            "canonicalisation with comments",
            "is not accepted",
            Box::new(|f| {
                f.after = |x| {
                    x.replacen("<ds:CanonicalizationMethod Algorithm=\"http://www.w3.org/2001/10/xml-exc-c14n#\"", "<ds:CanonicalizationMethod Algorithm=\"http://www.w3.org/2001/10/xml-exc-c14n#WithComments\"", 1)
                }
            }),
        ),
        (
            "a Manifest in the signature",
            "elements that are not accepted",
            Box::new(|f| {
                f.after = |x| {
                    x.replacen("</ds:Signature>", "<ds:Object><ds:Manifest><ds:Reference URI=\"file:///etc/passwd\"/></ds:Manifest></ds:Object></ds:Signature>", 1)
                }
            }),
        ),
        (
            "a RetrievalMethod in the key info",
            "elements that are not accepted",
            Box::new(|f| {
                f.after = |x| {
                    x.replacen(
                        "<ds:KeyInfo>",
                        "<ds:KeyInfo><ds:RetrievalMethod URI=\"http://169.254.169.254/key\"/>",
                        1,
                    )
                }
            }),
        ),
        (
            "a UTF-7 declaration",
            "encoding UTF-7",
            Box::new(|f| f.after = |x| x.replacen("encoding=\"UTF-8\"", "encoding=\"UTF-7\"", 1)),
        ),
        (
            "a lower-case DTD",
            "DTD",
            Box::new(|f| f.after = |x| x.replacen("?>", "?><!doctype r>", 1)),
        ),
        (
            "a processing instruction in the NameID",
            "processing instruction",
            Box::new(|f| {
                f.after = |x| {
                    x.replacen(
                        "carol@example.test</saml:NameID>",
                        "carol@example.test<?evil?></saml:NameID>",
                        1,
                    )
                }
            }),
        ),
    ];
    assert!(cases.len() >= 45, "{} forged cases", cases.len());
    let mut accepted = Vec::new();
    let mut wrong_reason = Vec::new();
    for (i, (what, reason, change)) in cases.iter().enumerate() {
        // Each from its own address: sign-in starts are limited per address.
        app.client_ip = format!("198.51.100.{}", i + 1);
        let browser = start(&app, &provider).await;
        let mut forge = Forge::genuine(&request_id(&browser), &acs, &audience, &idp_entity);
        change(&mut forge);
        let xml = forge.build(&key_dir);
        let encoded = base64::engine::general_purpose::STANDARD.encode(xml);
        let location = post_response(
            &app,
            &provider,
            &browser.cookie,
            &encoded,
            &browser.param("RelayState"),
        )
        .await;
        if !location.starts_with("error: ") {
            accepted.push(*what);
        } else if !location.contains(reason) {
            wrong_reason.push(format!("{what}: {location}"));
        }
    }
    assert!(
        accepted.is_empty(),
        "forged responses accepted: {accepted:?}"
    );
    assert!(
        wrong_reason.is_empty(),
        "refused for another reason than expected:\n{}",
        wrong_reason.join("\n")
    );

    // The generator makes responses the host accepts when nothing is forged (so each refusal
    // above is the forgery's), and that one cannot be used twice.
    app.client_ip = "203.0.113.1".into();
    let browser = start(&app, &provider).await;
    let genuine =
        Forge::genuine(&request_id(&browser), &acs, &audience, &idp_entity).build(&key_dir);
    let encoded = base64::engine::general_purpose::STANDARD.encode(&genuine);
    let location = post_response(
        &app,
        &provider,
        &browser.cookie,
        &encoded,
        &browser.param("RelayState"),
    )
    .await;
    assert!(
        location.starts_with("/login/sso#"),
        "the genuine response: {location}"
    );
    let again = start(&app, &provider).await;
    let replayed = post_response(
        &app,
        &provider,
        &again.cookie,
        &encoded,
        &again.param("RelayState"),
    )
    .await;
    assert!(
        replayed.starts_with("error: "),
        "a replayed response: {replayed}"
    );
    // Edges of the binding itself.
    for (i, bad) in ["", "%%%not-base64", "PHNhbWxwOlJlc3BvbnNlLz4="]
        .into_iter()
        .enumerate()
    {
        app.client_ip = format!("203.0.113.{}", i + 2);
        let b = start(&app, &provider).await;
        let location = post_response(&app, &provider, &b.cookie, bad, &b.param("RelayState")).await;
        assert!(location.starts_with("error: "), "{location}");
    }
    // A body over the host's limit is refused before anything reads it.
    let huge = format!("SAMLResponse={}", "A".repeat(2 << 20));
    let r = app
        .send_with_headers(
            "POST",
            &format!("/api/v1/auth/sso/{provider}/callback"),
            None,
            Some("application/x-www-form-urlencoded"),
            &[],
            huge.into_bytes(),
        )
        .await;
    assert_eq!(r.status, StatusCode::PAYLOAD_TOO_LARGE);
}
