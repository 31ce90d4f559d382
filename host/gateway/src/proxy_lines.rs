//! Lines of a node's managed nginx read as requests to its proxy hosts (issue 17): the JSON
//! access line the proxy backend renders (`"infrapilot":"access"`, with the proxy host's id and
//! the status) and nginx's error line (`…, host: "example.com"`), attributed through the node's
//! proxy hosts. Only lines the agent marked as its managed nginx's are read this way, and only
//! ids and domains of that node's own proxy hosts are believed.

use std::collections::HashMap;

/// The node's proxy hosts: ids, and the host each domain belongs to.
#[derive(Debug, Default)]
pub struct ProxyHosts {
    ids: std::collections::HashSet<String>,
    by_domain: HashMap<String, String>,
}

impl ProxyHosts {
    /// From the stored hosts' (id, spec JSON).
    pub fn new<'a>(hosts: impl Iterator<Item = (&'a str, &'a str)>) -> ProxyHosts {
        let mut out = ProxyHosts::default();
        for (id, spec) in hosts {
            out.ids.insert(id.to_owned());
            if let Ok(spec) = serde_json::from_str::<serde_json::Value>(spec)
                && let Some(domains) = spec["domains"].as_array()
            {
                for d in domains.iter().filter_map(|d| d.as_str()) {
                    out.by_domain.insert(d.to_ascii_lowercase(), id.to_owned());
                }
            }
        }
        out
    }
}

/// What an nginx line says about a proxy host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProxyLine {
    pub proxy_host_id: String,
    /// An access line's HTTP status.
    pub status: Option<i32>,
    /// `error` for 5xx, `warn` for 4xx, `info` otherwise; an error line's own level.
    pub level: Option<&'static str>,
}

#[derive(serde::Deserialize)]
struct AccessLine {
    infrapilot: String,
    proxy_host: String,
    status: i32,
}

/// Reads one line of the managed nginx.
pub fn read(line: &str, hosts: &ProxyHosts) -> Option<ProxyLine> {
    if line.starts_with('{') {
        let access: AccessLine = serde_json::from_str(line).ok()?;
        if access.infrapilot != "access" || !hosts.ids.contains(&access.proxy_host) {
            return None;
        }
        if !(100..=599).contains(&access.status) {
            return None;
        }
        let level = match access.status {
            500.. => "error",
            400.. => "warn",
            _ => "info",
        };
        return Some(ProxyLine {
            proxy_host_id: access.proxy_host,
            status: Some(access.status),
            level: Some(level),
        });
    }
    // 2026/12/06 10:00:00 [error] 29#29: *5 connect() failed (111: Connection refused) while
    // connecting to upstream, client: 10.0.0.1, server: a.example, request: "GET / HTTP/1.1",
    // upstream: "http://10.0.0.2:80/", host: "a.example"
    let rest = line.get(20..)?;
    let level = rest.strip_prefix('[')?.split(']').next()?;
    let level = match level {
        "emerg" | "alert" | "crit" | "error" => "error",
        "warn" => "warn",
        "notice" | "info" => "info",
        "debug" => "debug",
        _ => return None,
    };
    // nginx's own `server:` field (the server block's first name) comes before anything a
    // client controls (request, referrer, the Host header).
    let server = line.split_once(", server: ")?.1.split(',').next()?;
    let id = hosts.by_domain.get(&server.to_ascii_lowercase())?;
    Some(ProxyLine {
        proxy_host_id: id.clone(),
        status: None,
        level: Some(level),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const ID: &str = "5b0a4d43-8a3e-4a8f-9d33-4b1a3f0c2e11";

    fn hosts() -> ProxyHosts {
        let spec = r#"{"domains": ["a.example", "B.example"]}"#;
        ProxyHosts::new([(ID, spec)].into_iter())
    }

    #[test]
    fn access_lines_of_known_hosts_are_read() {
        let line = format!(
            r#"{{"infrapilot":"access","proxy_host":"{ID}","status":502,"method":"GET","path":"/x"}}"#
        );
        assert_eq!(
            read(&line, &hosts()),
            Some(ProxyLine {
                proxy_host_id: ID.into(),
                status: Some(502),
                level: Some("error")
            })
        );
        let ok = line.replace("502", "200");
        assert_eq!(read(&ok, &hosts()).unwrap().level, Some("info"));
        // Another node's (or a made-up) host, a status out of range, another kind of JSON.
        let other = line.replace(ID, "00000000-0000-4000-8000-000000000000");
        assert_eq!(read(&other, &hosts()), None);
        assert_eq!(read(&line.replace("502", "999"), &hosts()), None);
        assert_eq!(
            read(&line.replace("\"access\"", "\"other\""), &hosts()),
            None
        );
        assert_eq!(read(r#"{"level":"error"}"#, &hosts()), None);
    }

    #[test]
    fn error_lines_are_attributed_by_their_server() {
        let line = "2026/12/06 10:00:00 [error] 29#29: *5 connect() failed (111: Connection refused) while connecting to upstream, client: 10.0.0.1, server: B.example, request: \"GET / HTTP/1.1\", upstream: \"http://10.0.0.2:80/\", host: \"b.example:8080\"";
        assert_eq!(
            read(line, &hosts()),
            Some(ProxyLine {
                proxy_host_id: ID.into(),
                status: None,
                level: Some("error")
            })
        );
        assert_eq!(
            read(
                &line.replace("server: B.example", "server: c.example"),
                &hosts()
            ),
            None
        );
        // A client's Referer cannot move the line to another host.
        let forged = line.replace("server: B.example", "server: _")
            + ", referrer: \"x\", host: \"b.example\"";
        assert_eq!(read(&forged, &hosts()), None);
        assert_eq!(
            read(
                "2026/12/06 10:00:00 [notice] 1#1: signal process started",
                &hosts()
            ),
            None
        );
        assert_eq!(read("short", &hosts()), None);
    }
}
