//! Directory access (LDAP v3) for plugins: one conversation per call over TLS only (StartTLS on
//! `ldap://`, or `ldaps://`), to addresses the [`EgressGuard`] allows, resolved and checked by the
//! host before it dials (so a name cannot turn into a private address between the check and
//! the connection). Filter arguments are escaped here (RFC 4515), never by the plugin; an empty
//! password or DN is refused before anything is sent (RFC 4513's unauthenticated bind would
//! "succeed"); answers are bounded in entries and bytes.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use base64::Engine as _;
use ldap3::{LdapConnAsync, LdapConnSettings, Scope as LdapScope, SearchEntry, StdStream};
use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject;

use crate::contract::ldap::{Credentials, Entry, LdapError, Scope, SearchRequest, Server};
use crate::egress::EgressGuard;

/// Entries one search may return, whatever the plugin asks.
pub const MAX_ENTRIES: u32 = 1000;
/// Bytes of DNs and values one search may return.
pub const MAX_ANSWER_BYTES: usize = 1 << 20;
/// Longest DN, filter or argument accepted.
const MAX_TEXT: usize = 4096;
/// LDAP result code `invalidCredentials` (RFC 4511).
const INVALID_CREDENTIALS: u32 = 49;
/// LDAP result code `sizeLimitExceeded`.
const SIZE_LIMIT_EXCEEDED: u32 = 4;

/// A checked server address: the URL (for TLS names) and where to dial.
#[derive(Debug, Clone)]
pub struct Destination {
    url: url::Url,
    host: String,
    port: u16,
}

impl Destination {
    /// Parses `ldap://host[:port]` or `ldaps://host[:port]` (no path, query or credentials).
    pub fn parse(raw: &str) -> Result<Destination, LdapError> {
        let bad = |why: &str| LdapError::InvalidRequest(format!("server.url: {why}"));
        let url = url::Url::parse(raw.trim()).map_err(|e| bad(&e.to_string()))?;
        let default_port = match url.scheme() {
            "ldap" => 389,
            "ldaps" => 636,
            other => {
                return Err(bad(&format!(
                    "scheme {other} is not allowed (ldap:// with StartTLS, or ldaps://)"
                )));
            }
        };
        if !url.username().is_empty() || url.password().is_some() {
            return Err(bad("credentials in the URL are not allowed"));
        }
        if !matches!(url.path(), "" | "/") || url.query().is_some() || url.fragment().is_some() {
            return Err(bad(
                "only a scheme, a host and a port; no DN, filter or options",
            ));
        }
        let host = url
            .host_str()
            .filter(|h| !h.is_empty())
            .ok_or_else(|| bad("no host"))?
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_ascii_lowercase();
        let port = url.port().unwrap_or(default_port);
        Ok(Destination { url, host, port })
    }

    /// The host as the capability's patterns match it.
    pub fn host(&self) -> &str {
        &self.host
    }
}

/// The LDAP client plugins use.
#[derive(Clone)]
pub struct DirectoryEgress {
    guard: Arc<EgressGuard>,
}

impl DirectoryEgress {
    pub fn new(guard: EgressGuard) -> DirectoryEgress {
        DirectoryEgress {
            guard: Arc::new(guard),
        }
    }

    /// Binds as `credentials`.
    pub async fn bind(
        &self,
        server: &Server,
        credentials: &Credentials,
        timeout: Duration,
    ) -> Result<(), LdapError> {
        check_credentials(credentials)?;
        let destination = Destination::parse(&server.url)?;
        let work = async {
            let mut ldap = self.connect(&destination, server, timeout).await?;
            let outcome = bind(&mut ldap, credentials).await;
            let _ = ldap.unbind().await;
            outcome
        };
        tokio::time::timeout(timeout, work)
            .await
            .map_err(|_| LdapError::Timeout)?
    }

    /// Binds as `credentials`, then runs `request` with its arguments escaped into the filter.
    pub async fn search(
        &self,
        server: &Server,
        credentials: &Credentials,
        request: &SearchRequest,
        timeout: Duration,
    ) -> Result<Vec<Entry>, LdapError> {
        check_credentials(credentials)?;
        let filter = render_filter(&request.filter, &request.args)?;
        check_text("request.base", &request.base, true)?;
        if request.attributes.len() > 50 {
            return Err(LdapError::InvalidRequest(
                "request.attributes: at most 50".into(),
            ));
        }
        for (i, attribute) in request.attributes.iter().enumerate() {
            let ok = !attribute.is_empty()
                && attribute.len() <= 128
                && attribute
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b';' || b == b'.');
            if !ok {
                return Err(LdapError::InvalidRequest(format!(
                    "request.attributes.{i}: an attribute name (letters, digits, '-', '.', ';')"
                )));
            }
        }
        let size_limit = request.size_limit.clamp(1, MAX_ENTRIES);
        let scope = match request.scope {
            Scope::Base => LdapScope::Base,
            Scope::OneLevel => LdapScope::OneLevel,
            Scope::Subtree => LdapScope::Subtree,
        };
        let destination = Destination::parse(&server.url)?;
        let work = async {
            let mut ldap = self.connect(&destination, server, timeout).await?;
            let outcome = async {
                bind(&mut ldap, credentials).await?;
                let seconds = i32::try_from(timeout.as_secs().max(1)).unwrap_or(i32::MAX);
                let options = ldap3::SearchOptions::new()
                    .sizelimit(size_limit as i32)
                    .timelimit(seconds);
                let attributes: Vec<&str> = if request.attributes.is_empty() {
                    // No attributes asked: only the DNs ("1.1", RFC 4511 4.5.1.8).
                    vec!["1.1"]
                } else {
                    request.attributes.iter().map(String::as_str).collect()
                };
                // Streamed and counted as entries arrive: a directory that ignores the size
                // limit is cut off at it, not read to the end into memory.
                let mut stream = ldap
                    .with_search_options(options)
                    .streaming_search(&request.base, scope, &filter, attributes)
                    .await
                    .map_err(transport)?;
                let mut bytes = 0usize;
                let mut answer = Vec::new();
                while let Some(raw) = stream.next().await.map_err(transport)? {
                    if raw.is_ref() || raw.is_intermediate() {
                        // Referrals are not followed: the destination was checked, they were not.
                        continue;
                    }
                    if answer.len() >= size_limit as usize {
                        return Err(LdapError::TooLarge);
                    }
                    let entry = SearchEntry::construct(raw);
                    bytes += entry.dn.len();
                    let mut attributes: Vec<(String, Vec<String>)> = Vec::new();
                    for (name, values) in entry.attrs {
                        bytes += name.len() + values.iter().map(String::len).sum::<usize>();
                        attributes.push((name, values));
                    }
                    for (name, values) in entry.bin_attrs {
                        let values: Vec<String> = values
                            .iter()
                            .map(|v| base64::engine::general_purpose::STANDARD.encode(v))
                            .collect();
                        bytes += name.len() + values.iter().map(String::len).sum::<usize>();
                        attributes.push((name, values));
                    }
                    if bytes > MAX_ANSWER_BYTES {
                        return Err(LdapError::TooLarge);
                    }
                    attributes.sort();
                    answer.push(Entry {
                        dn: entry.dn,
                        attributes,
                    });
                }
                let result = stream.finish().await;
                if result.rc == SIZE_LIMIT_EXCEEDED {
                    return Err(LdapError::TooLarge);
                }
                if result.rc != 0 {
                    return Err(failed(result.rc, &result.text));
                }
                Ok(answer)
            }
            .await;
            let _ = ldap.unbind().await;
            outcome
        };
        tokio::time::timeout(timeout, work)
            .await
            .map_err(|_| LdapError::Timeout)?
    }

    /// Resolves, checks every address, dials the first that answers and sets up TLS.
    async fn connect(
        &self,
        destination: &Destination,
        server: &Server,
        timeout: Duration,
    ) -> Result<ldap3::Ldap, LdapError> {
        let addresses: Vec<SocketAddr> =
            tokio::net::lookup_host((destination.host.as_str(), destination.port))
                .await
                .map_err(|e| {
                    LdapError::Transport(format!("{} does not resolve: {e}", destination.host))
                })?
                .collect();
        if addresses.is_empty() {
            return Err(LdapError::Transport(format!(
                "{} does not resolve",
                destination.host
            )));
        }
        for address in &addresses {
            self.guard.check(address.ip()).map_err(|why| {
                LdapError::Denied(format!("{} resolves to {why}", destination.host))
            })?;
        }
        let mut last_error = None;
        let mut stream = None;
        for address in addresses {
            match tokio::time::timeout(timeout, tokio::net::TcpStream::connect(address)).await {
                Ok(Ok(s)) => {
                    stream = Some(s);
                    break;
                }
                Ok(Err(e)) => last_error = Some(e.to_string()),
                Err(_) => last_error = Some("connection timed out".into()),
            }
        }
        let stream = stream.ok_or_else(|| {
            LdapError::Transport(format!(
                "cannot connect to {}:{}: {}",
                destination.host,
                destination.port,
                last_error.unwrap_or_default()
            ))
        })?;
        let stream = stream
            .into_std()
            .map_err(|e| LdapError::Transport(e.to_string()))?;
        let settings = LdapConnSettings::new()
            .set_conn_timeout(timeout)
            .set_starttls(destination.url.scheme() == "ldap")
            .set_config(tls_config(server.ca_pem.as_deref())?)
            .set_std_stream(StdStream::Tcp(stream));
        let (connection, mut ldap) =
            LdapConnAsync::from_url_with_settings(settings, &destination.url)
                .await
                .map_err(transport)?;
        ldap3::drive!(connection);
        ldap.with_timeout(timeout);
        Ok(ldap)
    }
}

async fn bind(ldap: &mut ldap3::Ldap, credentials: &Credentials) -> Result<(), LdapError> {
    let result = ldap
        .simple_bind(&credentials.dn, &credentials.password)
        .await
        .map_err(transport)?;
    match result.rc {
        0 => Ok(()),
        INVALID_CREDENTIALS => Err(LdapError::InvalidCredentials),
        rc => Err(failed(rc, &result.text)),
    }
}

/// The system's roots and `ca_pem`'s certificates, over the one crypto provider (aws-lc-rs).
fn tls_config(ca_pem: Option<&str>) -> Result<Arc<rustls::ClientConfig>, LdapError> {
    let mut roots = rustls::RootCertStore::empty();
    for cert in rustls_native_certs::load_native_certs().certs {
        let _ = roots.add(cert);
    }
    if let Some(pem) = ca_pem.map(str::trim).filter(|p| !p.is_empty()) {
        let mut added = 0;
        for cert in CertificateDer::pem_slice_iter(pem.as_bytes()) {
            let cert = cert.map_err(|e| {
                LdapError::InvalidRequest(format!("server.ca-pem: not PEM certificates: {e}"))
            })?;
            roots.add(cert).map_err(|e| {
                LdapError::InvalidRequest(format!("server.ca-pem: a certificate is refused: {e}"))
            })?;
            added += 1;
        }
        if added == 0 {
            return Err(LdapError::InvalidRequest(
                "server.ca-pem: no certificate in it".into(),
            ));
        }
    }
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| LdapError::Transport(e.to_string()))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(Arc::new(config))
}

fn check_text(field: &str, value: &str, may_be_empty: bool) -> Result<(), LdapError> {
    if (!may_be_empty && value.trim().is_empty()) || value.len() > MAX_TEXT || value.contains('\0')
    {
        return Err(LdapError::InvalidRequest(format!(
            "{field}: {}",
            if value.trim().is_empty() {
                "empty"
            } else {
                "too long or contains NUL"
            }
        )));
    }
    Ok(())
}

/// An empty DN or password is an anonymous or unauthenticated bind: refused, never sent.
fn check_credentials(credentials: &Credentials) -> Result<(), LdapError> {
    check_text("credentials.dn", &credentials.dn, false)?;
    if credentials.password.is_empty() {
        return Err(LdapError::InvalidRequest(
            "credentials.password: empty (an unauthenticated bind is refused)".into(),
        ));
    }
    check_text("credentials.password", &credentials.password, false)
}

/// `filter` with each `{N}` replaced by `args[N]` escaped per RFC 4515; `{{` and `}}` are
/// literal braces. Every other brace, an index without an argument or an unused argument is an
/// error, and so is a result that does not parse as a filter.
pub fn render_filter(filter: &str, args: &[String]) -> Result<String, LdapError> {
    let bad = |why: String| LdapError::InvalidRequest(format!("request.filter: {why}"));
    check_text("request.filter", filter, false)?;
    if args.len() > 16 {
        return Err(LdapError::InvalidRequest("request.args: at most 16".into()));
    }
    for (i, arg) in args.iter().enumerate() {
        check_text(&format!("request.args.{i}"), arg, true)?;
    }
    let mut used = vec![false; args.len()];
    let mut out = String::with_capacity(filter.len() + 64);
    let mut chars = filter.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '{' if chars.peek() == Some(&'{') => {
                chars.next();
                out.push('{');
            }
            '}' if chars.peek() == Some(&'}') => {
                chars.next();
                out.push('}');
            }
            '{' => {
                let mut digits = String::new();
                loop {
                    match chars.next() {
                        Some('}') => break,
                        Some(d) if d.is_ascii_digit() && digits.len() < 2 => digits.push(d),
                        _ => {
                            return Err(bad("a '{' that is not {N} (write {{ for a brace)".into()));
                        }
                    }
                }
                let index: usize = digits
                    .parse()
                    .map_err(|_| bad("an empty {} (write {0} for the first argument)".into()))?;
                let arg = args
                    .get(index)
                    .ok_or_else(|| bad(format!("{{{index}}} has no argument")))?;
                used[index] = true;
                out.push_str(&ldap3::ldap_escape(arg.as_str()));
            }
            '}' => return Err(bad("a '}' without its '{' (write }} for a brace)".into())),
            other => out.push(other),
        }
    }
    if let Some(unused) = used.iter().position(|u| !u) {
        return Err(LdapError::InvalidRequest(format!(
            "request.args.{unused}: not used by the filter"
        )));
    }
    ldap3::parse_filter(&out).map_err(|_| bad("not an RFC 4515 filter".into()))?;
    Ok(out)
}

fn failed(rc: u32, text: &str) -> LdapError {
    let text: String = text.chars().filter(|c| !c.is_control()).take(200).collect();
    LdapError::Failed(format!("result {rc}: {text}"))
}

fn transport(e: ldap3::LdapError) -> LdapError {
    match e {
        ldap3::LdapError::Timeout { .. } => LdapError::Timeout,
        ldap3::LdapError::LdapResult { result } if result.rc == INVALID_CREDENTIALS => {
            LdapError::InvalidCredentials
        }
        ldap3::LdapError::LdapResult { result } => failed(result.rc, &result.text),
        other => LdapError::Transport(other.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(values: &[&str]) -> Vec<String> {
        values.iter().map(|v| v.to_string()).collect()
    }

    #[test]
    fn arguments_are_escaped_so_they_cannot_change_the_filter() {
        assert_eq!(
            render_filter("(uid={0})", &args(&["alice"])).unwrap(),
            "(uid=alice)"
        );
        let injected = render_filter("(uid={0})", &args(&["*)(uid=*))(|(uid=*"])).unwrap();
        assert_eq!(injected, r"(uid=\2a\29\28uid=\2a\29\29\28|\28uid=\2a)");
        assert_eq!(
            render_filter(
                "(&(objectClass=person)(|(uid={0})(mail={0}))(x={1}))",
                &args(&["a\\b", "c*"])
            )
            .unwrap(),
            r"(&(objectClass=person)(|(uid=a\5cb)(mail=a\5cb))(x=c\2a))"
        );
        assert_eq!(
            render_filter("(cn={{literal}})", &[]).unwrap(),
            "(cn={literal})"
        );
    }

    #[test]
    fn malformed_templates_are_refused_naming_the_field() {
        for (filter, a) in [
            ("(uid={1})", args(&["x"])),
            ("(uid={0}", args(&["x"])),
            ("(uid={x})", args(&["x"])),
            ("(uid={})", args(&["x"])),
            ("(uid=x})", args(&[])),
            ("(uid=x)", args(&["unused"])),
            ("", args(&[])),
            ("uid=x)(", args(&[])),
        ] {
            let e = render_filter(filter, &a).unwrap_err();
            let LdapError::InvalidRequest(text) = e else {
                panic!("{filter}: {e:?}")
            };
            assert!(text.starts_with("request."), "{filter}: {text}");
        }
    }

    #[test]
    fn only_tls_ldap_urls_without_extras_are_servers() {
        let d = Destination::parse("ldap://Dir.Example.com").unwrap();
        assert_eq!((d.host(), d.port), ("dir.example.com", 389));
        assert_eq!(Destination::parse("ldaps://10.0.0.1").unwrap().port, 636);
        assert_eq!(
            Destination::parse("ldap://[::1]:1389").unwrap().host(),
            "::1"
        );
        for bad in [
            "http://dir.example.com",
            "ldapi:///var/run/slapd",
            "ldap://user:pw@dir.example.com",
            "ldap://dir.example.com/dc=example,dc=com",
            "ldap://dir.example.com/??sub?(uid=x)",
            "ldap://",
            "not a url",
        ] {
            let e = Destination::parse(bad).unwrap_err();
            assert!(
                matches!(&e, LdapError::InvalidRequest(t) if t.starts_with("server.url")),
                "{bad}: {e:?}"
            );
        }
    }

    #[tokio::test]
    async fn empty_passwords_and_dns_are_refused_before_any_connection() {
        let directory = DirectoryEgress::new(EgressGuard::default());
        // A server that would be denied anyway: the credentials are checked first.
        let server = Server {
            url: "ldap://127.0.0.1:1".into(),
            ca_pem: None,
            timeout_ms: None,
        };
        for (dn, password, field) in [
            ("uid=alice,dc=example", "", "credentials.password"),
            ("", "secret", "credentials.dn"),
            ("  ", "secret", "credentials.dn"),
        ] {
            let credentials = Credentials {
                dn: dn.into(),
                password: password.into(),
            };
            let e = directory
                .bind(&server, &credentials, Duration::from_secs(1))
                .await
                .unwrap_err();
            assert!(
                matches!(&e, LdapError::InvalidRequest(t) if t.starts_with(field)),
                "{e:?}"
            );
        }
    }

    #[tokio::test]
    async fn private_addresses_are_denied_unless_allowed() {
        let directory = DirectoryEgress::new(EgressGuard::default());
        let server = Server {
            url: "ldap://127.0.0.1:1".into(),
            ca_pem: None,
            timeout_ms: None,
        };
        let credentials = Credentials {
            dn: "uid=alice".into(),
            password: "pw".into(),
        };
        let e = directory
            .bind(&server, &credentials, Duration::from_secs(1))
            .await
            .unwrap_err();
        assert!(matches!(e, LdapError::Denied(_)), "{e:?}");
    }
}
