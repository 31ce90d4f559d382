//! Capability `http`: outbound requests to the manifest's hosts only, each redirect checked
//! like the first (scheme, host, no downgrade; credentials dropped across origins).

use std::time::{Duration, Instant};

use super::Capability;
use crate::contract::http::{HttpError, Method, Request, Response};
use crate::runtime::HostState;

/// Redirects followed per request, each hop checked like the first.
const MAX_REDIRECTS: usize = 5;
const MAX_REQUEST_BODY_BYTES: usize = 1 << 20;
/// Headers kept when a redirect leaves the origin; every other header is dropped.
const SAFE_CROSS_ORIGIN_HEADERS: [&str; 4] =
    ["accept", "accept-language", "content-type", "user-agent"];

fn redirect_target(base: &url::Url, response: &Response) -> Option<Result<url::Url, HttpError>> {
    if !matches!(response.status, 301 | 302 | 303 | 307 | 308) {
        return None;
    }
    let location = response
        .headers
        .iter()
        .find(|h| h.name.eq_ignore_ascii_case("location"))?;
    Some(base.join(&location.value).map_err(|e| {
        HttpError::Transport(format!(
            "redirect to an invalid location {:?}: {e}",
            location.value
        ))
    }))
}

impl HostState {
    /// Checks a URL against the scheme rules and the plugin's hosts.
    fn check_url(&self, raw: &str) -> Result<url::Url, HttpError> {
        let url =
            url::Url::parse(raw).map_err(|e| HttpError::InvalidRequest(format!("url: {e}")))?;
        if !matches!(url.scheme(), "http" | "https") {
            return Err(HttpError::InvalidRequest(format!(
                "url: scheme {} is not allowed (http or https)",
                url.scheme()
            )));
        }
        if !url.username().is_empty() || url.password().is_some() {
            return Err(HttpError::InvalidRequest(
                "url: credentials in the URL are not allowed; use a header".into(),
            ));
        }
        let host = url
            .host_str()
            .ok_or_else(|| HttpError::InvalidRequest("url: no host".into()))?
            .trim_start_matches('[')
            .trim_end_matches(']');
        if !self.caps.allows_host(host) {
            return Err(HttpError::Denied(format!(
                "{host} is not among the hosts this plugin may reach"
            )));
        }
        Ok(url)
    }

    fn remaining(&self) -> Duration {
        self.deadline.saturating_duration_since(Instant::now())
    }
}

impl HostState {
    /// One plugin HTTP exchange: the grant, the manifest's hosts, bounded redirects.
    pub(crate) async fn http_fetch(&mut self, request: Request) -> Result<Response, HttpError> {
        self.grant(Capability::Http).map_err(HttpError::Denied)?;
        if request
            .body
            .as_ref()
            .is_some_and(|b| b.len() > MAX_REQUEST_BODY_BYTES)
        {
            return Err(HttpError::InvalidRequest("body: larger than 1 MiB".into()));
        }
        let mut request = request;
        let mut url = self
            .check_url(&request.url)
            .inspect_err(|_| self.denials += 1)?;
        for hop in 0..=MAX_REDIRECTS {
            let remaining = self.remaining();
            if remaining.is_zero() {
                return Err(HttpError::Timeout);
            }
            let asked = request
                .timeout_ms
                .map(|ms| Duration::from_millis(u64::from(ms)))
                .unwrap_or(self.limits.http_timeout);
            let timeout = asked.min(self.limits.http_timeout).min(remaining);
            let response = self
                .services
                .http_fetch(&self.plugin_id, request.clone(), timeout)
                .await?;
            let Some(next) = redirect_target(&url, &response) else {
                return Ok(response);
            };
            if hop == MAX_REDIRECTS {
                return Err(HttpError::Transport(format!(
                    "more than {MAX_REDIRECTS} redirects"
                )));
            }
            let next = self
                .check_url(next?.as_str())
                .map_err(|e| match e {
                    HttpError::Denied(why) => HttpError::Denied(format!("redirect refused: {why}")),
                    other => other,
                })
                .inspect_err(|_| self.denials += 1)?;
            if response.status == 303
                || (matches!(response.status, 301 | 302) && request.method == Method::Post)
            {
                request.method = Method::Get;
                request.body = None;
            }
            if url.scheme() == "https" && next.scheme() == "http" {
                return Err(HttpError::Denied(format!(
                    "redirect refused: {next} would downgrade https to http"
                )));
            }
            if next.origin() != url.origin() {
                // Credentials and keys are for the origin the plugin named, not where it is sent.
                request.headers.retain(|h| {
                    SAFE_CROSS_ORIGIN_HEADERS
                        .iter()
                        .any(|safe| h.name.eq_ignore_ascii_case(safe))
                });
            }
            request.url = next.to_string();
            url = next;
        }
        unreachable!("the loop returns on its last hop")
    }
}

#[cfg(test)]
mod tests {
    use super::super::testing::state;
    use crate::contract::http::{HttpError, Method, Request};

    fn get(url: &str) -> Request {
        Request {
            method: Method::Get,
            url: url.into(),
            headers: Vec::new(),
            body: None,
            timeout_ms: None,
        }
    }

    #[tokio::test]
    async fn only_granted_hosts_over_http_or_https_without_credentials() {
        let (mut denied, recorded) = state(serde_json::json!({}));
        assert!(matches!(
            denied.http_fetch(get("https://hooks.example.com/")).await,
            Err(HttpError::Denied(_))
        ));
        let (mut granted, sent) =
            state(serde_json::json!({"http": {"hosts": ["hooks.example.com"]}}));
        assert!(
            granted
                .http_fetch(get("https://hooks.example.com/x"))
                .await
                .is_ok()
        );
        assert!(matches!(
            granted.http_fetch(get("https://other.example.com/")).await,
            Err(HttpError::Denied(_))
        ));
        assert!(matches!(
            granted.http_fetch(get("ftp://hooks.example.com/")).await,
            Err(HttpError::InvalidRequest(_))
        ));
        assert!(matches!(
            granted
                .http_fetch(get("https://u:p@hooks.example.com/"))
                .await,
            Err(HttpError::InvalidRequest(_))
        ));
        assert!(recorded.requests.lock().unwrap().is_empty());
        assert_eq!(
            sent.requests.lock().unwrap().len(),
            1,
            "only the allowed request left"
        );
        assert_eq!(denied.denials, 1);
        // Every URL the checks refuse counts as a denial.
        assert_eq!(granted.denials, 3);
    }
}
