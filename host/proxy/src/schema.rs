//! The JSON Schema of a proxy host as the API documents it: every rule [`ProxySpec::validated`]
//! applies that JSON Schema can state (alphabets as patterns, ranges, "exactly one of container
//! or host", "uploaded needs a certificate id", "no wildcard with ACME"), so that generated
//! clients and schemathesis agree with the server. The patterns are ECMA-262 and Rust-regex
//! compatible (no look-around); the tests below check them against the validators on generated
//! inputs, so a change to one side without the other fails.
//!
//! [`ProxySpec::validated`]: crate::model::ProxySpec::validated

use serde_json::{Value, json};

use crate::model::{
    CSP_DIRECTIVES, MAX_ACCESS_RULES, MAX_BODY_BYTES, MAX_DOMAINS, MAX_HSTS_SECONDS, MAX_LOCATIONS,
    REFERRER_POLICIES,
};

/// One RFC 1123 label.
const LABEL: &str = "[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?";
/// The last label of a host name starts with a letter (no numeric top-level domain).
const LAST_LABEL: &str = "[A-Za-z]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?";
/// An IPv4 octet as Rust parses it (no leading zeros).
const OCTET: &str = "(25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])";
const HEX: &str = "[0-9A-Fa-f]{1,4}";

/// A host name; with `wildcard`, a leading `*.` before at least two labels. A single label
/// must also not be a number ([`NUMBER_PATTERN`], stated with `not`).
pub fn host_name_pattern(wildcard: bool) -> String {
    let plain = format!("({LABEL}\\.)+{LAST_LABEL}|{LABEL}");
    if wildcard {
        format!("^(\\*\\.({LABEL}\\.)+{LAST_LABEL}|{plain})$")
    } else {
        format!("^({plain})$")
    }
}

/// Digits only: not a host name.
pub const NUMBER_PATTERN: &str = "^[0-9]+$";

/// An IPv4 address as Rust parses it (four decimal octets without leading zeros).
pub fn ipv4() -> String {
    format!("{OCTET}(\\.{OCTET}){{3}}")
}

/// Every textual IPv6 form Rust's parser accepts: eight groups, `::` standing for one or more
/// zero groups, and a dotted IPv4 address in place of the last two groups.
pub fn ipv6() -> String {
    let v4 = ipv4();
    let h = HEX;
    let mut forms = vec![
        format!("({h}:){{7}}{h}"),
        format!("({h}:){{6}}{v4}"),
        // `::` with nothing before it.
        format!("::(({h}:){{0,6}}{h})?"),
        format!("::({h}:){{0,5}}{v4}"),
    ];
    // `head::tail`: `head` has n groups (1–7), `tail` at most 7 − n (or 5 − n before IPv4).
    for n in 1..=7usize {
        let head = format!("({h}:){{{}}}{h}", n - 1);
        let tail = 7 - n;
        forms.push(if tail == 0 {
            format!("{head}::")
        } else {
            format!("{head}::(({h}:){{0,{}}}{h})?", tail - 1)
        });
        if n <= 5 {
            forms.push(format!("{head}::({h}:){{0,{}}}{v4}", 5 - n));
        }
    }
    format!("({})", forms.join("|"))
}

/// A container name (Docker's alphabet, at most 128; a leading `/` as Docker prints it).
pub const CONTAINER_NAME_PATTERN: &str = "^/?[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$";

/// An upstream address: an IP address (IPv6 optionally in brackets) or a host name.
pub fn upstream_host_pattern() -> String {
    let name = format!("({LABEL}\\.)+{LAST_LABEL}|{LABEL}");
    let v6 = ipv6();
    format!("^({}|{v6}|\\[{v6}\\]|{name})$", ipv4())
}

/// The unspecified addresses (`0.0.0.0`, `::`, `[::]`, `::0.0.0.0` …): only zeros, colons,
/// dots and brackets.
pub const UNSPECIFIED_ADDRESS_PATTERN: &str = "^\\[?[0:.]*\\]?$";

/// A location path prefix other than `/`: the alphabet `A-Z a-z 0-9 / _ . ~ -`, starting with
/// `/`, without `..` or `//` — between runs of other characters, `/` and `.` alternate.
/// Written so that each string has one parse (no nested optional repeats): linear to match in
/// backtracking engines too.
pub const LOCATION_PATH_PATTERN: &str =
    "^/(\\./)*\\.?([A-Za-z0-9_~-]+(\\.(/\\.)*/?|/(\\./)*\\.?))*[A-Za-z0-9_~-]*$";

/// A CSP source: a keyword (`self`, `none` …, written without quotes) or a scheme or host
/// source; every keyword also fits this alphabet.
pub const CSP_SOURCE_PATTERN: &str = "^[A-Za-z0-9*][A-Za-z0-9.*:/_-]{0,199}$";

/// A certificate id: a UUID.
pub const UUID_PATTERN: &str =
    "^[0-9A-Fa-f]{8}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{12}$";

/// An access source: `all`, an IP address, or a CIDR (prefix length written with 1–3 digits).
pub fn access_source_pattern() -> String {
    let v4_bits = "(0{0,2}[0-9]|0?[12][0-9]|0?3[0-2])";
    let v6_bits = "(0{0,2}[0-9]|0?[1-9][0-9]|1[01][0-9]|12[0-8])";
    format!("^(all|{}(/{v4_bits})?|{}(/{v6_bits})?)$", ipv4(), ipv6())
}

/// `words` in any letter case, as the validators compare them.
pub fn any_case(words: &[&str]) -> String {
    let alternatives: Vec<String> = words
        .iter()
        .map(|w| {
            w.chars()
                .map(|c| {
                    if c.is_ascii_alphabetic() {
                        format!("[{}{}]", c.to_ascii_uppercase(), c.to_ascii_lowercase())
                    } else {
                        // Digits and `-`: literal outside a class (no escape, which ECMA-262's
                        // unicode mode would refuse).
                        assert!(c.is_ascii_digit() || c == '-', "{c:?} in a word");
                        c.to_string()
                    }
                })
                .collect()
        })
        .collect();
    format!("^({})$", alternatives.join("|"))
}

/// Where requests go: exactly one of `container` and `host` is a string (the other absent or
/// null), a port from 1, the scheme `http` or `https`.
fn upstream(description: &str) -> Value {
    let container = json!({"type": "string", "pattern": CONTAINER_NAME_PATTERN,
        "description": "A container name on this node; nginx joins one of its networks."});
    let host = json!({"type": "string", "maxLength": 253, "pattern": upstream_host_pattern(),
        "allOf": [{"not": {"pattern": UNSPECIFIED_ADDRESS_PATTERN}}, {"not": {"pattern": NUMBER_PATTERN}}],
        "description": "An IP address or host name."});
    let common = json!({
        "port": {"type": "integer", "minimum": 1, "maximum": 65535},
        "scheme": {"type": "string", "pattern": any_case(&["http", "https"]),
                   "description": "`http` (default) or `https`."},
    });
    let branch = |present: &str, schema: &Value, absent: &str| {
        let mut properties = common.clone();
        properties[present] = schema.clone();
        properties[absent] = json!({"type": "null"});
        json!({"type": "object", "required": [present, "port"], "properties": properties,
               "additionalProperties": false})
    };
    json!({
        "description": description,
        "oneOf": [branch("container", &container, "host"), branch("host", &host, "container")],
    })
}

fn nullable(schema: Value) -> Value {
    json!({"oneOf": [schema, {"type": "null"}]})
}

/// HTTPS: `acme` without a certificate id, or `uploaded` with one.
fn tls() -> Value {
    let redirect = json!({"type": "boolean",
        "description": "Answer plain HTTP with a redirect to HTTPS (default true)."});
    json!({
        "description": "HTTPS for this host: a certificate issued and renewed by the node over ACME HTTP-01 (`acme`), or one the user uploaded (`uploaded`, with `certificate_id`).",
        "oneOf": [
            {"type": "object", "required": ["mode"], "additionalProperties": false,
             "properties": {"mode": {"type": "string", "pattern": any_case(&["acme"])},
                            "certificate_id": {"type": "null"}, "redirect_http": redirect}},
            {"type": "object", "required": ["mode", "certificate_id"], "additionalProperties": false,
             "properties": {"mode": {"type": "string", "pattern": any_case(&["uploaded"])},
                            "certificate_id": {"type": "string", "pattern": UUID_PATTERN,
                                "description": "The id of an uploaded certificate that covers every domain of the host."},
                            "redirect_http": redirect}},
        ],
    })
}

/// The schema of [`crate::ProxySpec`] as a request body and as stored.
pub fn proxy_spec() -> Value {
    let csp_directive = json!({
        "type": "object", "required": ["name"], "additionalProperties": false,
        "properties": {
            "name": {"type": "string", "pattern": any_case(CSP_DIRECTIVES),
                     "description": "e.g. `default-src`, `img-src`, `frame-ancestors`."},
            "sources": {"type": "array", "maxItems": 30,
                        "items": {"type": "string", "pattern": CSP_SOURCE_PATTERN}},
        },
    });
    let headers = json!({
        "type": "object", "additionalProperties": false,
        "properties": {
            "hsts": nullable(json!({
                "type": "object", "required": ["max_age_seconds"], "additionalProperties": false,
                "description": "Strict-Transport-Security (sent on HTTPS only by browsers' rules).",
                "properties": {
                    "max_age_seconds": {"type": "integer", "minimum": 0, "maximum": MAX_HSTS_SECONDS},
                    "include_subdomains": {"type": "boolean"},
                },
            })),
            "content_security_policy": {
                "type": "array", "maxItems": 30, "items": csp_directive,
                "description": "Content-Security-Policy as directives; keyword sources are written without quotes (`self`, `none`, `unsafe-inline` …) and quoted when rendered.",
            },
            "frame_options": nullable(json!({"type": "string",
                "pattern": any_case(&["DENY", "SAMEORIGIN"]),
                "description": "X-Frame-Options: `DENY` or `SAMEORIGIN`."})),
            "content_type_nosniff": {"type": "boolean"},
            "referrer_policy": nullable(json!({"type": "string",
                "pattern": any_case(REFERRER_POLICIES)})),
        },
    });
    let wildcard_domain = json!({"type": "string", "pattern": "^\\*"});
    json!({
        "type": "object",
        "description": "A proxy host: the domains it answers and where their requests go.",
        "required": ["domains", "upstream"],
        "additionalProperties": false,
        "properties": {
            "domains": {
                "type": "array", "minItems": 1, "maxItems": MAX_DOMAINS, "uniqueItems": true,
                "description": "Host names this host answers (RFC 1123, compared without letter case; a leading `*.` for a wildcard), at least one.",
                "items": {"type": "string", "maxLength": 253, "pattern": host_name_pattern(true),
                          "not": {"pattern": NUMBER_PATTERN}},
            },
            "upstream": upstream("Where requests go: a container on this node (`container`) or an address (`host`)."),
            "websockets": {"type": "boolean", "description": "Pass WebSocket upgrades to the upstream."},
            "locations": {
                "type": "array", "maxItems": MAX_LOCATIONS, "uniqueItems": true,
                "description": "Path prefixes sent to other upstreams (each path once).",
                "items": {
                    "type": "object", "required": ["path", "upstream"], "additionalProperties": false,
                    "properties": {
                        "path": {"type": "string", "minLength": 2, "maxLength": 200,
                                 "pattern": LOCATION_PATH_PATTERN,
                                 "description": "A path prefix: `/api/`."},
                        "upstream": upstream("Where requests under this path go."),
                        "websockets": {"type": "boolean"},
                    },
                },
            },
            "headers": headers,
            "rate_limit": nullable(json!({
                "type": "object", "required": ["requests_per_second"], "additionalProperties": false,
                "properties": {
                    "requests_per_second": {"type": "integer", "minimum": 1, "maximum": 100_000,
                        "description": "Requests per second per client address."},
                    "burst": {"type": "integer", "minimum": 0, "maximum": 100_000,
                        "description": "Requests above the rate admitted at once."},
                },
            })),
            "max_body_bytes": {"type": ["integer", "null"], "minimum": 0, "maximum": MAX_BODY_BYTES,
                "description": "Largest request body in bytes (nginx's default of 1 MiB when absent; 0 = unlimited)."},
            "access": {
                "type": "array", "maxItems": MAX_ACCESS_RULES,
                "description": "Allow/deny rules by client address, in order (nginx semantics: first match wins).",
                "items": {
                    "type": "object", "required": ["action", "source"], "additionalProperties": false,
                    "properties": {
                        "action": {"type": "string", "pattern": any_case(&["allow", "deny"])},
                        "source": {"type": "string", "pattern": access_source_pattern(),
                                   "description": "An IPv4/IPv6 address, a CIDR, or `all`."},
                    },
                },
            },
            "tls": nullable(tls()),
        },
        // ACME's HTTP-01 challenge cannot issue a wildcard certificate.
        "if": {"required": ["tls"], "properties": {"tls": {"type": "object", "required": ["mode"],
               "properties": {"mode": {"pattern": any_case(&["acme"])}}}}},
        "then": {"properties": {"domains": {"items": {"not": wildcard_domain}}}},
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::ProxySpec;

    fn matcher(pattern: &str) -> regex::Regex {
        regex::Regex::new(pattern).unwrap()
    }

    /// A small deterministic generator (xorshift) of strings over `alphabet`.
    struct Strings {
        state: u64,
    }

    impl Strings {
        fn new(seed: u64) -> Self {
            Strings { state: seed }
        }

        fn step(&mut self) -> u64 {
            let mut x = self.state;
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            self.state = x;
            x
        }

        /// Up to `max` pieces of `tokens` joined: near misses more often than random bytes.
        fn join(&mut self, tokens: &[&str], max: usize) -> String {
            let count = (self.step() % (max as u64 + 1)) as usize;
            (0..count)
                .map(|_| tokens[(self.step() % tokens.len() as u64) as usize])
                .collect()
        }

        fn next(&mut self, alphabet: &[u8], max_len: usize) -> String {
            let x = self.step();
            let len = (x % (max_len as u64 + 1)) as usize;
            (0..len)
                .map(|i| {
                    let y = x.rotate_left(i as u32 * 7) ^ (i as u64).wrapping_mul(0x9E37_79B9);
                    alphabet[(y % alphabet.len() as u64) as usize] as char
                })
                .collect()
        }
    }

    fn spec_with(domain: &str, host: &str, path: &str, source: &str) -> serde_json::Value {
        json!({
            "domains": [domain],
            "upstream": {"host": host, "port": 80},
            "locations": [{"path": path, "upstream": {"container": "web", "port": 80}}],
            "access": [{"action": "allow", "source": source}],
        })
    }

    fn accepted(spec: serde_json::Value) -> Result<(), String> {
        let spec: ProxySpec = serde_json::from_value(spec).map_err(|e| e.to_string())?;
        spec.validated().map(|_| ()).map_err(|e| e.to_string())
    }

    #[test]
    fn the_address_patterns_agree_with_rusts_parser() {
        let v6 = matcher(&format!("^{}$", ipv6()));
        let v4 = matcher(&format!("^{}$", ipv4()));
        let mut strings = Strings::new(0x5eed);
        let samples = [
            "::",
            "::1",
            "1::",
            "1:2:3:4:5:6:7:8",
            "1:2:3:4:5:6:7::",
            "::2:3:4:5:6:7:8",
            "1::8",
            "1:2:3:4:5:6:1.2.3.4",
            "::1.2.3.4",
            "::ffff:10.0.0.1",
            "1::1.2.3.4",
            "1:2:3:4:5::1.2.3.4",
            "1:2:3:4:5:6::1.2.3.4",
            "1:2:3:4:5:6:7:8:9",
            ":1",
            "1:",
            "1:::2",
            "12345::",
            "1.2.3.4",
            "01.2.3.4",
            "256.1.1.1",
            "1.2.3",
            "0.0.0.0",
        ];
        let tokens = [
            "0", "1", "ff", "aBcD", "12345", ":", ":", "::", ":::", ".", "1.2.3.4", "255", "256",
            "01", "[", "]",
        ];
        let generated: Vec<String> = (0..200_000)
            .map(|i| {
                if i % 2 == 0 {
                    strings.join(&tokens, 12)
                } else {
                    strings.next(b"0123456789abcdefABCDEF:.", 24)
                }
            })
            .collect();
        let mut valid = 0;
        for s in samples.iter().map(|s| s.to_string()).chain(generated) {
            valid += usize::from(s.parse::<std::net::IpAddr>().is_ok());
            assert_eq!(
                v6.is_match(&s),
                s.parse::<std::net::Ipv6Addr>().is_ok(),
                "IPv6 {s:?}"
            );
            assert_eq!(
                v4.is_match(&s),
                s.parse::<std::net::Ipv4Addr>().is_ok(),
                "IPv4 {s:?}"
            );
        }
        // The generator reaches both sides of the line.
        assert!(valid > 1_000, "only {valid} valid addresses generated");
    }

    #[test]
    fn the_field_patterns_agree_with_the_validators() {
        let domain = matcher(&host_name_pattern(true));
        let host = matcher(&upstream_host_pattern());
        let unspecified = matcher(UNSPECIFIED_ADDRESS_PATTERN);
        let number = matcher(NUMBER_PATTERN);
        // Long labels and names too: the 63- and 253-character limits on both sides.
        let (l63, l64) = ("x".repeat(63), "y".repeat(64));
        let name_tokens = [
            "a", "Z", "0", "9", "-", ".", ".", "*.", "x1", &l63, &l64, "b.", "c-d.",
        ];
        let path = matcher(LOCATION_PATH_PATTERN);
        let source = matcher(&access_source_pattern());
        let ok = (
            "example.com".to_owned(),
            "10.0.0.1".to_owned(),
            "/api/".to_owned(),
            "all".to_owned(),
        );
        assert_eq!(accepted(spec_with(&ok.0, &ok.1, &ok.2, &ok.3)), Ok(()));
        let mut strings = Strings::new(42);
        let mut valid = [0usize; 4];
        for round in 0..60_000 {
            let d = if round % 2 == 0 {
                strings.next(b"aZ09-.*x", 12)
            } else {
                strings.join(&name_tokens, 12)
            };
            let verdict = accepted(spec_with(&d, &ok.1, &ok.2, &ok.3));
            assert_eq!(
                domain.is_match(&d) && d.len() <= 253 && !number.is_match(&d),
                verdict.is_ok(),
                "domain {d:?}: {verdict:?}"
            );
            valid[0] += usize::from(verdict.is_ok());

            let h = if round % 2 == 0 {
                strings.next(b"a09.:-[]fZ", 14)
            } else {
                strings.join(&name_tokens, 12)
            };
            let verdict = accepted(spec_with(&ok.0, &h, &ok.2, &ok.3));
            let schema = host.is_match(&h)
                && !unspecified.is_match(&h)
                && !number.is_match(&h)
                && h.len() <= 253;
            assert_eq!(schema, verdict.is_ok(), "host {h:?}: {verdict:?}");
            valid[1] += usize::from(verdict.is_ok());

            let p = strings.next(b"/.a_~-", 10);
            let verdict = accepted(spec_with(&ok.0, &ok.1, &p, &ok.3));
            let schema = path.is_match(&p) && (2..=200).contains(&p.len());
            assert_eq!(schema, verdict.is_ok(), "path {p:?}: {verdict:?}");
            valid[2] += usize::from(verdict.is_ok());

            let s = strings.next(b"0123:./a8f", 16);
            let verdict = accepted(spec_with(&ok.0, &ok.1, &ok.2, &s));
            assert_eq!(
                source.is_match(&s),
                verdict.is_ok(),
                "source {s:?}: {verdict:?}"
            );
            valid[3] += usize::from(verdict.is_ok());
        }
        assert!(
            valid.iter().all(|v| *v > 200),
            "accepted inputs per field: {valid:?}"
        );
    }

    #[test]
    fn words_match_in_any_case_and_nothing_else() {
        let m = matcher(&any_case(&["strict-origin", "no-referrer"]));
        for yes in ["strict-origin", "STRICT-ORIGIN", "No-Referrer"] {
            assert!(m.is_match(yes), "{yes}");
        }
        for no in ["strict", "strict-originx", "xno-referrer", ""] {
            assert!(!m.is_match(no), "{no}");
        }
    }
}
