//! The hostile-input corpus (`hostile-corpus.json`: CR/LF, `;`, braces, `$`, quotes, unicode
//! tricks, overlong labels …) against every string field of the proxy model: each is refused
//! naming the field it was put in. The few that are legitimate values of a lenient field (a
//! Docker container name may contain `_` and `..`) must come back in that field's safe alphabet.

use infrapilot_proxy::model::{
    AccessSpec, CspDirective, HeadersSpec, LocationSpec, ProxySpec, TlsSpec, UpstreamSpec,
};

fn corpus() -> Vec<String> {
    let text = include_str!("hostile-corpus.json");
    let corpus: Vec<String> = serde_json::from_str(text).expect("corpus is JSON");
    assert!(
        corpus.len() >= 100,
        "the corpus has {} strings",
        corpus.len()
    );
    corpus
}

fn base() -> ProxySpec {
    ProxySpec {
        domains: vec!["app.example.com".into()],
        upstream: UpstreamSpec {
            container: None,
            host: Some("10.0.0.5".into()),
            port: 8080,
            scheme: "http".into(),
        },
        websockets: false,
        locations: vec![LocationSpec {
            path: "/api/".into(),
            upstream: UpstreamSpec {
                container: Some("api".into()),
                host: None,
                port: 80,
                scheme: "http".into(),
            },
            websockets: true,
        }],
        headers: HeadersSpec {
            hsts: None,
            content_security_policy: vec![CspDirective {
                name: "default-src".into(),
                sources: vec!["self".into()],
            }],
            frame_options: Some("DENY".into()),
            content_type_nosniff: true,
            referrer_policy: Some("no-referrer".into()),
        },
        rate_limit: None,
        max_body_bytes: Some(1 << 20),
        access: vec![AccessSpec {
            action: "allow".into(),
            source: "10.0.0.0/8".into(),
        }],
        tls: Some(TlsSpec {
            mode: "acme".into(),
            certificate_id: None,
            redirect_http: true,
        }),
    }
}

type Mutation = fn(&mut ProxySpec, String);
/// The characters a lenient field may keep.
type Alphabet = fn(char) -> bool;

/// Fields where no corpus string is a legitimate value.
const STRICT: &[(&str, Mutation)] = &[
    ("domains[0]", |s, v| s.domains[0] = v),
    ("domains[1]", |s, v| s.domains.push(v)),
    ("upstream.host", |s, v| s.upstream.host = Some(v)),
    ("upstream.scheme", |s, v| s.upstream.scheme = v),
    ("tls.mode", |s, v| s.tls.as_mut().unwrap().mode = v),
    ("locations[0].upstream.host", |s, v| {
        s.locations[0].upstream.container = None;
        s.locations[0].upstream.host = Some(v);
    }),
    ("tls.certificate_id", |s, v| {
        let tls = s.tls.as_mut().unwrap();
        tls.mode = "uploaded".into();
        tls.certificate_id = Some(v);
    }),
    ("access[0].source", |s, v| s.access[0].source = v),
    ("access[0].action", |s, v| s.access[0].action = v),
    ("headers.frame_options", |s, v| {
        s.headers.frame_options = Some(v)
    }),
    ("headers.referrer_policy", |s, v| {
        s.headers.referrer_policy = Some(v)
    }),
    ("headers.content_security_policy[0].name", |s, v| {
        s.headers.content_security_policy[0].name = v
    }),
];

/// Fields where a few corpus strings are legitimate (and then must stay in a safe alphabet).
const LENIENT: &[(&str, Mutation, Alphabet)] = &[
    (
        "upstream.container",
        |s, v| {
            s.upstream.host = None;
            s.upstream.container = Some(v);
        },
        |c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'),
    ),
    (
        "locations[0].path",
        |s, v| s.locations[0].path = v,
        |c| c.is_ascii_alphanumeric() || matches!(c, '/' | '_' | '.' | '~' | '-'),
    ),
    (
        "headers.content_security_policy[0].sources[0]",
        |s, v| s.headers.content_security_policy[0].sources[0] = v,
        |c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '*' | ':' | '/' | '_'),
    ),
];

#[test]
fn the_base_host_is_valid() {
    let spec = base().validated().expect("base is valid");
    assert_eq!(spec.containers(), vec!["api".to_owned()]);
    assert_eq!(spec.csp_header().as_deref(), Some("default-src 'self'"));
}

#[test]
fn every_hostile_string_is_refused_naming_its_field() {
    let mut refused = 0;
    for value in corpus() {
        for (field, mutate) in STRICT {
            let mut spec = base();
            mutate(&mut spec, value.clone());
            match spec.validated() {
                Err(e) => {
                    assert_eq!(&e.field, field, "{value:?} in {field}: wrong field ({e})");
                    assert!(!e.message.is_empty());
                    refused += 1;
                }
                Ok(_) => panic!("{value:?} was accepted in {field}"),
            }
        }
    }
    assert!(refused >= 1000, "{refused} refusals");
}

#[test]
fn lenient_fields_refuse_or_keep_a_safe_alphabet() {
    let mut accepted = Vec::new();
    for value in corpus() {
        for (field, mutate, safe) in LENIENT {
            let mut spec = base();
            mutate(&mut spec, value.clone());
            match spec.validated() {
                Err(e) => assert_eq!(&e.field, field, "{value:?} in {field}: wrong field ({e})"),
                Ok(valid) => {
                    let stored = match *field {
                        "upstream.container" => {
                            valid.upstream.container.clone().unwrap_or_default()
                        }
                        "locations[0].path" => valid.locations[0].path.clone(),
                        _ => valid.headers.content_security_policy[0].sources[0].clone(),
                    };
                    assert!(
                        stored.chars().all(safe),
                        "{value:?} accepted in {field} as {stored:?}"
                    );
                    accepted.push((field.to_string(), value.clone()));
                }
            }
        }
    }
    // Nothing with a control character, quote, `;`, brace, `$` or non-ASCII got through.
    for (field, value) in &accepted {
        assert!(
            !value.chars().any(|c| c.is_control()
                || matches!(c, '"' | '\'' | ';' | '{' | '}' | '$' | '\\' | ' ')
                || !c.is_ascii()),
            "{value:?} accepted in {field}"
        );
    }
}

#[test]
fn domains_are_normalised_and_checked() {
    let mut spec = base();
    spec.domains = vec!["App.Example.COM".into(), "*.example.com".into()];
    // A wildcard cannot be issued over HTTP-01.
    assert_eq!(spec.validated().unwrap_err().field, "domains[1]");
    spec.tls = None;
    let valid = spec.validated().expect("valid");
    assert_eq!(valid.domains, vec!["app.example.com", "*.example.com"]);
    spec.domains = vec!["a.example.com".into(), "A.example.com".into()];
    assert_eq!(spec.validated().unwrap_err().field, "domains[1]");
    spec.domains = vec![];
    assert_eq!(spec.validated().unwrap_err().field, "domains");
    spec.domains = vec!["xn--bcher-kva.example".into()];
    assert!(spec.validated().is_ok());
}

#[test]
fn numbers_out_of_range_name_their_field() {
    let mut spec = base();
    spec.upstream.port = 0;
    assert_eq!(spec.validated().unwrap_err().field, "upstream.port");
    let mut spec = base();
    spec.max_body_bytes = Some(u64::MAX);
    assert_eq!(spec.validated().unwrap_err().field, "max_body_bytes");
    let mut spec = base();
    spec.rate_limit = Some(infrapilot_proxy::model::RateLimitSpec {
        requests_per_second: 0,
        burst: 0,
    });
    assert_eq!(
        spec.validated().unwrap_err().field,
        "rate_limit.requests_per_second"
    );
    let mut spec = base();
    spec.access[0].source = "10.0.0.0/33".into();
    assert_eq!(spec.validated().unwrap_err().field, "access[0].source");
    let mut spec = base();
    spec.upstream.container = Some("web".into());
    assert_eq!(spec.validated().unwrap_err().field, "upstream");
}
