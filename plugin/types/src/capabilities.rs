//! Capabilities: what a plugin's manifest requests, what the operator grants, and what the host
//! functions allow (the intersection of the two). Everything not in the intersection is denied.

use serde::{Deserialize, Serialize};

/// A set of host capabilities. `Default` is the empty set (deny everything).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Capabilities {
    #[serde(default)]
    pub log: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub http: Option<HttpCapability>,
    #[serde(default)]
    pub mail: bool,
    #[serde(default)]
    pub kv: bool,
    #[serde(default)]
    pub config: bool,
    #[serde(default)]
    pub secrets: bool,
    #[serde(default)]
    pub clock: bool,
    #[serde(default)]
    pub random: bool,
    /// Directory access over LDAP to the listed hosts (same patterns as `http`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ldap: Option<HttpCapability>,
    /// SAML requests and responses checked by the host (sign-in providers).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub saml: bool,
}

/// Outbound connections (HTTP, LDAP) to the listed hosts: exact names or IP addresses, `*.example.com` (any
/// subdomain, not the domain itself), or `*` (any host; the address guard still applies).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HttpCapability {
    pub hosts: Vec<String>,
}

impl Capabilities {
    /// What both sides allow (for host lists, see [`intersect_hosts`]).
    pub fn intersect(&self, grant: &Capabilities) -> Capabilities {
        Capabilities {
            log: self.log && grant.log,
            http: intersect_hosts(&self.http, &grant.http),
            mail: self.mail && grant.mail,
            kv: self.kv && grant.kv,
            config: self.config && grant.config,
            secrets: self.secrets && grant.secrets,
            clock: self.clock && grant.clock,
            random: self.random && grant.random,
            ldap: intersect_hosts(&self.ldap, &grant.ldap),
            saml: self.saml && grant.saml,
        }
    }

    /// Names of the capabilities in the set, for listings ("log", "http", …).
    pub fn names(&self) -> Vec<&'static str> {
        let mut names = Vec::new();
        for (on, name) in [
            (self.log, "log"),
            (self.http.is_some(), "http"),
            (self.mail, "mail"),
            (self.kv, "kv"),
            (self.config, "config"),
            (self.secrets, "secrets"),
            (self.clock, "clock"),
            (self.random, "random"),
            (self.ldap.is_some(), "ldap"),
            (self.saml, "saml"),
        ] {
            if on {
                names.push(name);
            }
        }
        names
    }

    /// Whether outbound HTTP to `host` (a lowercase name or IP literal without brackets) is allowed.
    pub fn allows_host(&self, host: &str) -> bool {
        hosts_allow(&self.http, host)
    }

    /// Whether LDAP to `host` (a lowercase name or IP literal without brackets) is allowed.
    pub fn allows_ldap_host(&self, host: &str) -> bool {
        hosts_allow(&self.ldap, host)
    }
}

fn hosts_allow(capability: &Option<HttpCapability>, host: &str) -> bool {
    let Some(capability) = capability else {
        return false;
    };
    let host = host.trim_end_matches('.').to_ascii_lowercase();
    capability
        .hosts
        .iter()
        .any(|pattern| host_matches(pattern, &host))
}

/// Hosts both sides allow: a grant of `*` keeps every requested pattern; otherwise a granted
/// pattern survives when a requested one covers it (a request of `*` narrowed by the operator to
/// `hooks.example.com` gives `hooks.example.com`).
fn intersect_hosts(
    request: &Option<HttpCapability>,
    grant: &Option<HttpCapability>,
) -> Option<HttpCapability> {
    let (Some(request), Some(granted)) = (request, grant) else {
        return None;
    };
    let hosts: Vec<String> = if granted.hosts.iter().any(|h| h == "*") {
        request.hosts.clone()
    } else {
        granted
            .hosts
            .iter()
            .filter(|g| request.hosts.iter().any(|r| pattern_covers(r, g)))
            .cloned()
            .collect()
    };
    (!hosts.is_empty()).then_some(HttpCapability { hosts })
}

/// Whether every host `inner` matches is matched by `outer` too.
fn pattern_covers(outer: &str, inner: &str) -> bool {
    let (outer, inner) = (outer.to_ascii_lowercase(), inner.to_ascii_lowercase());
    if outer == "*" || outer == inner {
        return true;
    }
    match inner.strip_prefix("*.") {
        // *.a.example.com is covered by *.example.com
        Some(inner_suffix) => outer
            .strip_prefix("*.")
            .is_some_and(|o| inner_suffix.ends_with(&format!(".{o}"))),
        None => host_matches(&outer, &inner),
    }
}

fn host_matches(pattern: &str, host: &str) -> bool {
    let pattern = pattern.to_ascii_lowercase();
    if pattern == "*" {
        return true;
    }
    if let Some(suffix) = pattern.strip_prefix("*.") {
        return host.len() > suffix.len() + 1
            && host.ends_with(suffix)
            && host.as_bytes()[host.len() - suffix.len() - 1] == b'.';
    }
    pattern == host
}

/// Checks a host pattern from a manifest or a grant; returns why it is not acceptable.
pub fn check_host_pattern(pattern: &str) -> Result<(), String> {
    if pattern == "*" {
        return Ok(());
    }
    let name = pattern.strip_prefix("*.").unwrap_or(pattern);
    if name.parse::<std::net::IpAddr>().is_ok() && !pattern.starts_with("*.") {
        return Ok(());
    }
    let valid_label = |l: &str| {
        !l.is_empty()
            && l.len() <= 63
            && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
            && !l.starts_with('-')
            && !l.ends_with('-')
    };
    if name.is_empty() || name.len() > 253 || !name.split('.').all(valid_label) {
        return Err(format!(
            "{pattern:?} is not a host name, an IP address, *.domain or *"
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn http(hosts: &[&str]) -> Capabilities {
        Capabilities {
            http: Some(HttpCapability {
                hosts: hosts.iter().map(|h| (*h).to_owned()).collect(),
            }),
            ..Capabilities::default()
        }
    }

    #[test]
    fn the_intersection_denies_what_either_side_leaves_out() {
        let request = Capabilities {
            log: true,
            mail: true,
            ..http(&["hooks.slack.com", "*.example.com"])
        };
        let grant = Capabilities {
            log: true,
            kv: true,
            ..http(&["*.example.com"])
        };
        let both = request.intersect(&grant);
        assert!(both.log);
        assert!(!both.mail, "requested but not granted");
        assert!(!both.kv, "granted but not requested");
        assert!(both.allows_host("api.example.com"));
        assert!(!both.allows_host("hooks.slack.com"));
        assert!(
            !both.allows_host("example.com"),
            "*.x does not match x itself"
        );
        assert!(!both.allows_host("evilexample.com"));
        // The operator narrows a broad request.
        let narrowed = http(&["*"]).intersect(&http(&["hooks.example.com"]));
        assert!(narrowed.allows_host("hooks.example.com"));
        assert!(!narrowed.allows_host("other.example.com"));
        let sub = request.intersect(&http(&["a.example.com", "*.b.example.com", "evil.org"]));
        assert_eq!(
            sub.http.unwrap().hosts,
            ["a.example.com", "*.b.example.com"],
            "granted patterns inside the request survive, others do not"
        );
        let all = request.intersect(&http(&["*"]));
        assert!(all.allows_host("hooks.slack.com"));
        assert!(!all.allows_host("other.org"));
        assert_eq!(
            Capabilities::default().intersect(&request),
            Capabilities::default()
        );
    }

    #[test]
    fn host_patterns_are_checked() {
        for ok in [
            "*",
            "a.example.com",
            "*.example.com",
            "127.0.0.1",
            "::1",
            "localhost",
        ] {
            assert!(check_host_pattern(ok).is_ok(), "{ok}");
        }
        for bad in [
            "",
            "*.",
            "a..b",
            "-a.com",
            "a b",
            "http://x",
            "*.1.2.3.4x$",
            "a/b",
            "*.*.com",
        ] {
            assert!(check_host_pattern(bad).is_err(), "{bad}");
        }
    }
}
