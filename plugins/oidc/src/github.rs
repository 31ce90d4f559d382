//! The GitHub preset: OAuth 2.0 without an ID token (GitHub is not an OpenID Provider). The code
//! is exchanged at GitHub's token endpoint (with the client secret and the host's PKCE
//! verifier), then the REST API says who signed in: `/user` (the numeric id is the subject — a
//! login name can be renamed and reused), `/user/emails` (only a primary, verified address is
//! vouched for), `/user/orgs` and `/user/teams` (the groups: `org` and `org/team-slug`).
//! GitHub Enterprise Server works with its own URL (API under `/api/v3`).

use infrapilot_plugin_sdk::sso::{Identity, LoginError, LoginRequest, http};
use infrapilot_plugin_sdk::sso_provider::infrapilot::plugin::types::Header;
use serde::Deserialize;

const DEFAULT_URL: &str = "https://github.com";
/// Organisations and teams read per list (one page: GitHub's maximum).
const PER_PAGE: u32 = 100;

/// Where GitHub is: the web origin (authorize, token) and the API base.
pub struct GitHub {
    web: String,
    api: String,
}

impl GitHub {
    /// From the `github_url` setting: github.com by default, or a GitHub Enterprise Server.
    pub fn new(setting: Option<&str>) -> Result<GitHub, String> {
        let web = setting
            .map(str::trim)
            .filter(|u| !u.is_empty())
            .unwrap_or(DEFAULT_URL)
            .trim_end_matches('/')
            .to_owned();
        let parsed = url::Url::parse(&web).map_err(|e| format!("github_url: {e}"))?;
        let loopback = matches!(parsed.host_str(), Some("127.0.0.1" | "localhost" | "[::1]"));
        let origin_only = matches!(parsed.path(), "" | "/")
            && parsed.query().is_none()
            && parsed.username().is_empty();
        if !(parsed.scheme() == "https" || parsed.scheme() == "http" && loopback) || !origin_only {
            return Err(
                "github_url: an https origin (https://github.com or your GitHub Enterprise Server)"
                    .into(),
            );
        }
        let api = if web == DEFAULT_URL {
            "https://api.github.com".to_owned()
        } else {
            format!("{web}/api/v3")
        };
        Ok(GitHub { web, api })
    }

    /// The issuer people are pinned to: the GitHub they signed in at.
    pub fn issuer(&self) -> &str {
        &self.web
    }

    pub fn authorize_url(
        &self,
        client_id: &str,
        request: &LoginRequest,
        scopes: &str,
    ) -> Result<String, LoginError> {
        let mut url = url::Url::parse(&format!("{}/login/oauth/authorize", self.web))
            .map_err(|e| LoginError::InvalidSettings(format!("github_url: {e}")))?;
        url.query_pairs_mut()
            .append_pair("client_id", client_id)
            .append_pair("redirect_uri", &request.callback_url)
            .append_pair("scope", scopes)
            .append_pair("state", &request.state)
            .append_pair("code_challenge", &request.code_challenge)
            .append_pair("code_challenge_method", "S256")
            .append_pair("allow_signup", "false");
        Ok(url.to_string())
    }

    /// Exchanges the code for an access token (GitHub answers 200 with an `error` for a bad code).
    pub fn exchange(
        &self,
        client_id: &str,
        client_secret: &str,
        code: &str,
        verifier: &str,
        redirect_uri: &str,
    ) -> Result<String, LoginError> {
        let body = url::form_urlencoded::Serializer::new(String::new())
            .append_pair("client_id", client_id)
            .append_pair("client_secret", client_secret)
            .append_pair("code", code)
            .append_pair("code_verifier", verifier)
            .append_pair("redirect_uri", redirect_uri)
            .finish();
        let response = http::fetch(&http::Request {
            method: http::Method::Post,
            url: format!("{}/login/oauth/access_token", self.web),
            headers: vec![
                header("accept", "application/json"),
                header("content-type", "application/x-www-form-urlencoded"),
            ],
            body: Some(body.into_bytes()),
            timeout_ms: None,
        })
        .map_err(|e| LoginError::Unavailable(format!("GitHub's token endpoint: {e:?}")))?;
        #[derive(Deserialize)]
        struct TokenAnswer {
            access_token: Option<String>,
            error: Option<String>,
        }
        let answer: TokenAnswer = serde_json::from_slice(&response.body).map_err(|_| {
            LoginError::Unavailable(format!(
                "GitHub's token endpoint answered {} without JSON",
                response.status
            ))
        })?;
        match (answer.access_token, answer.error) {
            (Some(token), None) if response.status == 200 && !token.is_empty() => Ok(token),
            (_, Some(error)) => Err(LoginError::Rejected(format!(
                "GitHub refused the code ({})",
                error
                    .chars()
                    .filter(|c| c.is_ascii_alphanumeric() || *c == '_')
                    .take(64)
                    .collect::<String>()
            ))),
            _ => Err(LoginError::Unavailable(format!(
                "GitHub's token endpoint answered {}",
                response.status
            ))),
        }
    }

    fn get<T: for<'de> Deserialize<'de>>(&self, token: &str, path: &str) -> Result<T, LoginError> {
        let response = http::fetch(&http::Request {
            method: http::Method::Get,
            url: format!("{}{path}", self.api),
            headers: vec![
                header("accept", "application/vnd.github+json"),
                header("authorization", &format!("Bearer {token}")),
                header("x-github-api-version", "2022-11-28"),
            ],
            body: None,
            timeout_ms: None,
        })
        .map_err(|e| LoginError::Unavailable(format!("GitHub's API ({path}): {e:?}")))?;
        if response.status != 200 {
            return Err(LoginError::Unavailable(format!(
                "GitHub's API ({path}) answered {}",
                response.status
            )));
        }
        serde_json::from_slice(&response.body)
            .map_err(|e| LoginError::Unavailable(format!("GitHub's API ({path}): {e}")))
    }

    /// Who the access token belongs to, with their verified primary email and their groups.
    pub fn identity(&self, token: &str) -> Result<Identity, LoginError> {
        #[derive(Deserialize)]
        struct User {
            id: u64,
            login: String,
            name: Option<String>,
        }
        #[derive(Deserialize)]
        struct Email {
            email: String,
            primary: bool,
            verified: bool,
        }
        #[derive(Deserialize)]
        struct Org {
            login: String,
        }
        #[derive(Deserialize)]
        struct Team {
            slug: String,
            organization: Org,
        }
        let user: User = self.get(token, "/user")?;
        let emails: Vec<Email> = self.get(token, "/user/emails")?;
        let orgs: Vec<Org> = self.get(token, &format!("/user/orgs?per_page={PER_PAGE}"))?;
        let teams: Vec<Team> = self.get(token, &format!("/user/teams?per_page={PER_PAGE}"))?;
        let primary = emails.iter().find(|e| e.primary);
        let mut groups: Vec<String> = orgs.into_iter().map(|o| o.login).collect();
        groups.extend(
            teams
                .into_iter()
                .map(|t| format!("{}/{}", t.organization.login, t.slug)),
        );
        groups.sort();
        groups.dedup();
        Ok(Identity {
            subject: user.id.to_string(),
            issuer: self.issuer().to_owned(),
            email: primary.map(|e| e.email.clone()),
            email_verified: primary.is_some_and(|e| e.verified),
            name: Some(
                user.name
                    .filter(|n| !n.trim().is_empty())
                    .unwrap_or(user.login.clone()),
            ),
            groups,
            attributes: vec![("login".into(), user.login)],
        })
    }
}

fn header(name: &str, value: &str) -> Header {
    Header {
        name: name.to_owned(),
        value: value.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn github_dot_com_and_enterprise_servers_have_their_api() {
        let gh = GitHub::new(None).unwrap();
        assert_eq!(
            (gh.web.as_str(), gh.api.as_str()),
            ("https://github.com", "https://api.github.com")
        );
        let ghes = GitHub::new(Some("https://ghe.example.com/")).unwrap();
        assert_eq!(ghes.api, "https://ghe.example.com/api/v3");
        assert!(GitHub::new(Some("http://ghe.example.com")).is_err());
        assert!(GitHub::new(Some("https://ghe.example.com/path")).is_err());
        assert!(GitHub::new(Some("http://127.0.0.1:9999")).is_ok());
    }
}
