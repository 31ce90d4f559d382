//! A real host (enterprise edition) and a real agent process enrolled with a token of a second
//! organisation: the node appears, online, in that organisation only — its session, heartbeats
//! and events are written there, and the default organisation sees none of it; deleting the
//! organisation ends the node's session and the gateway refuses it from then on.

mod common;

use std::time::{Duration, Instant};

use common::{Api, Server, SmtpServer, enrolled_agent, eventually};
use serde_json::json;

const ORG_HEADER: &str = "x-infrapilot-org";

#[tokio::test(flavor = "multi_thread")]
async fn an_agent_belongs_to_the_organisation_of_its_token() {
    if common::docker().await.is_none() {
        return;
    }
    let server = Server::start_with(false, 1, &[("INFRAPILOT_EDITION", "enterprise")]).await;
    let root = server.admin().await;
    let (status, beta) = root
        .call("POST", "/api/v1/orgs", Some(json!({"name": "Beta"})))
        .await;
    assert_eq!(status, 201, "{beta}");
    let beta = beta["id"].as_str().unwrap().to_owned();
    let (status, bob) = root
        .call_with(
            "POST",
            "/api/v1/users",
            Some(json!({"email": "bob@example.com", "password": "a long password", "name": "Bob", "role": "admin"})),
            &[(ORG_HEADER, &beta)],
        )
        .await;
    assert_eq!(status, 201, "{bob}");
    let bob: Api = root.login("bob@example.com", "a long password").await;

    // Bob's enrollment token is Beta's: so is the node.
    let (state, mut agent) = enrolled_agent(&server, &bob, "beta-node").await;
    let id = bob.online_agent("beta-node").await;
    let mine = root.get("/api/v1/agents").await;
    assert!(
        mine.as_array()
            .unwrap()
            .iter()
            .all(|a| a["name"] != "beta-node"),
        "the default organisation lists Beta's node: {mine}"
    );
    let (status, body) = root
        .call("GET", &format!("/api/v1/agents/{id}"), None)
        .await;
    assert_eq!(status, 404, "{body}");
    let (status, body) = root
        .call("GET", &format!("/api/v1/agents/{id}/events"), None)
        .await;
    assert_eq!(status, 404, "{body}");
    // The host operator sees it by naming Beta.
    let (status, listed) = root
        .call_with("GET", "/api/v1/agents", None, &[(ORG_HEADER, &beta)])
        .await;
    assert_eq!(status, 200, "{listed}");
    assert!(
        listed
            .as_array()
            .unwrap()
            .iter()
            .any(|a| a["id"] == id.as_str()),
        "{listed}"
    );
    // Its heartbeats land in Beta: last_seen keeps moving there.
    let first = bob.get(&format!("/api/v1/agents/{id}")).await["last_seen_at"].clone();
    let started = Instant::now();
    loop {
        let now = bob.get(&format!("/api/v1/agents/{id}")).await["last_seen_at"].clone();
        if now != first {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "no heartbeat recorded in Beta"
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
    }

    // Deleting Beta ends the node's session; the gateway refuses it after (unknown certificate).
    let (status, body) = bob
        .call(
            "DELETE",
            &format!("/api/v1/orgs/{beta}"),
            Some(json!({"confirm_name": "Beta"})),
        )
        .await;
    assert_eq!(status, 204, "{body}");
    let started = Instant::now();
    loop {
        if agent.try_wait().unwrap().is_some() {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "the agent of a deleted organisation still runs; host log:\n{}",
            server.log()
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    assert!(
        server.log().contains("organisation was deleted"),
        "{}",
        server.log()
    );
    // It stopped because the gateway refused it when it came back.
    let agent_log = std::fs::read_to_string(state.with_extension("log")).unwrap_or_default();
    assert!(
        agent_log.contains("unknown agent certificate"),
        "agent log:\n{agent_log}"
    );
}

/// A host of `edition` mailing through a real SMTP server (aiosmtpd) on loopback.
async fn host_with_mail(edition: &str) -> (SmtpServer, Server) {
    let smtp = SmtpServer::start().await;
    let port = smtp.port.to_string();
    let server = Server::start_with(
        false,
        30,
        &[
            ("INFRAPILOT_EDITION", edition),
            ("INFRAPILOT_SMTP_HOST", "127.0.0.1"),
            ("INFRAPILOT_SMTP_PORT", &port),
            ("INFRAPILOT_SMTP_SECURITY", "none"),
            ("INFRAPILOT_SMTP_FROM", "InfraPilot <noreply@example.com>"),
        ],
    )
    .await;
    (smtp, server)
}

/// The body of a mail as sent (quoted-printable soft line breaks and `=3D` undone).
fn decoded(mail: &str) -> String {
    mail.replace("=\r\n", "")
        .replace("=\n", "")
        .replace("=3D", "=")
}

#[tokio::test(flavor = "multi_thread")]
async fn an_invitation_is_mailed_and_accepted_through_its_link() {
    let (smtp, server) = host_with_mail("enterprise").await;
    let root = server.admin().await;
    let (status, beta) = root
        .call("POST", "/api/v1/orgs", Some(json!({"name": "Beta Team"})))
        .await;
    assert_eq!(status, 201, "{beta}");
    let beta = beta["id"].as_str().unwrap().to_owned();
    let (status, body) = root
        .call(
            "POST",
            "/api/v1/users",
            Some(json!({"email": "carol@example.com", "password": "a long password", "name": "Carol", "role": "viewer"})),
        )
        .await;
    assert_eq!(status, 201, "{body}");

    let (status, invitation) = root
        .call(
            "POST",
            &format!("/api/v1/orgs/{beta}/invitations"),
            Some(json!({"email": "carol@example.com", "role": "operator"})),
        )
        .await;
    assert_eq!(status, 201, "{invitation}");
    assert_eq!(invitation["mailed"], true, "{invitation}");

    // The mail arrives at the SMTP server with the link; the token is read from the mail alone.
    let mail = eventually("the invitation mail", Duration::from_secs(20), || async {
        smtp.messages()
            .into_iter()
            .find(|m| m.contains("carol@example.com"))
    })
    .await;
    let body = decoded(&mail);
    assert!(body.contains("Beta Team"), "{body}");
    let link_at = body
        .find("/invitations/accept#")
        .expect("the accept link in the mail");
    let token: String = body[link_at + "/invitations/accept#".len()..]
        .chars()
        .take_while(|c| c.is_ascii_alphanumeric() || *c == '-' || *c == '_')
        .collect();
    assert!(token.starts_with("ipi_") && token.len() > 40, "{token}");
    assert!(
        body.contains(&format!("{}/invitations/accept#", server.base)),
        "{body}"
    );

    let carol = root.login("carol@example.com", "a long password").await;
    let (status, joined) = carol
        .call("POST", &format!("/api/v1/invitations/{token}/accept"), None)
        .await;
    assert_eq!(status, 200, "{joined}");
    assert_eq!(joined["id"], beta.as_str());
    assert_eq!(joined["role"], "operator");
    let (status, again) = carol
        .call("POST", &format!("/api/v1/invitations/{token}/accept"), None)
        .await;
    assert_eq!(status, 410, "used twice: {again}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_stranger_signs_up_verifies_the_email_and_signs_in() {
    let (smtp, server) = host_with_mail("saas").await;
    let root = server.admin().await;
    let anonymous = Api {
        base: server.base.clone(),
        token: String::new(),
    };
    let signup = json!({"email": "dana@example.com", "password": "a long password", "name": "Dana", "organisation": "Dana's Startup"});
    let (status, body) = anonymous
        .call("POST", "/api/v1/signup", Some(signup.clone()))
        .await;
    assert_eq!(status, 201, "{body}");
    assert_eq!(body["mailed"], true, "{body}");
    let org = body["org_id"].as_str().unwrap().to_owned();
    let (status, again) = anonymous.call("POST", "/api/v1/signup", Some(signup)).await;
    assert_eq!(status, 409, "{again}");
    let (status, bad) = anonymous
        .call(
            "POST",
            "/api/v1/signup",
            Some(json!({"email": "x@example.com", "password": "short", "name": "X", "organisation": "X"})),
        )
        .await;
    assert_eq!(
        (status, bad["error"]["field"].as_str()),
        (400, Some("password")),
        "{bad}"
    );

    // Before the link: no sign-in.
    let (status, refused) = anonymous
        .call(
            "POST",
            "/api/v1/auth/login",
            Some(json!({"email": "dana@example.com", "password": "a long password"})),
        )
        .await;
    assert_eq!(status, 403, "{refused}");
    assert_eq!(refused["error"]["code"], "email_unverified");

    let mail = eventually("the verification mail", Duration::from_secs(20), || async {
        smtp.messages()
            .into_iter()
            .find(|m| m.contains("dana@example.com"))
    })
    .await;
    let body = decoded(&mail);
    let at = body
        .find("/signup/verify#")
        .expect("the verification link in the mail");
    let token: String = body[at + "/signup/verify#".len()..]
        .chars()
        .take_while(|c| c.is_ascii_alphanumeric() || *c == '-' || *c == '_')
        .collect();
    let (status, wrong) = anonymous
        .call(
            "POST",
            "/api/v1/signup/verify",
            Some(json!({"token": "ipv_wrong"})),
        )
        .await;
    assert_eq!(status, 401, "{wrong}");
    let (status, ok) = anonymous
        .call(
            "POST",
            "/api/v1/signup/verify",
            Some(json!({"token": token})),
        )
        .await;
    assert_eq!(status, 204, "{ok}");
    let (status, used) = anonymous
        .call(
            "POST",
            "/api/v1/signup/verify",
            Some(json!({"token": token})),
        )
        .await;
    assert_eq!(status, 401, "used twice: {used}");

    // Dana signs in, in her own organisation as its admin, and sees nothing of the host's.
    let dana = anonymous.login("dana@example.com", "a long password").await;
    let orgs = dana.get("/api/v1/orgs").await;
    assert_eq!(orgs.as_array().unwrap().len(), 1, "{orgs}");
    assert_eq!(orgs[0]["id"], org.as_str());
    assert_eq!(orgs[0]["role"], "admin");
    let audit = dana.get("/api/v1/audit?limit=50").await;
    let actions: Vec<&str> = audit["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["action"].as_str().unwrap())
        .collect();
    for expected in ["signup", "signup.verify", "auth.login"] {
        assert!(actions.contains(&expected), "{actions:?}");
    }
    assert!(!actions.contains(&"setup.complete"), "{actions:?}");
    // In the SaaS edition anyone signed in makes more organisations.
    let (status, second) = dana
        .call(
            "POST",
            "/api/v1/orgs",
            Some(json!({"name": "Side project"})),
        )
        .await;
    assert_eq!(status, 201, "{second}");
    let _ = root;
}
