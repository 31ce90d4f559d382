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
        let script =
            PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../tests/peers/start-saml-idp.sh");
        let mut command = Command::new("bash");
        command.arg(&script).arg(sp_entity_id).arg(acs_url);
        if let Some((dir, port)) = again {
            command
                .env("IDP_DIR", dir)
                .env("IDP_PORT", port.to_string());
        }
        let out = command.output().unwrap();
        assert!(
            out.status.success(),
            "start-saml-idp.sh: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let dir = PathBuf::from(String::from_utf8(out.stdout).unwrap().trim());
        let env = std::fs::read_to_string(dir.join("env")).unwrap();
        let var = |name: &str| -> String {
            env.split_whitespace()
                .find_map(|w| w.strip_prefix(&format!("{name}=")))
                .unwrap_or_else(|| panic!("{name} in {env}"))
                .to_owned()
        };
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
            let r = app
                .post("/api/v1/sso/providers", Some(&admin), body(&bad))
                .await;
            assert_eq!(r.status, StatusCode::BAD_REQUEST, "{:?}", r.body);
            assert_eq!(r.field(), Some("settings.idp_metadata"), "{:?}", r.body);
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
        let _idp = Idp::start(&entity_id, &acs_url, Some((&idp.dir, idp.port)));

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
