//! Probes for what a TLS server accepts beyond what a modern client asks for: a hand-built
//! ClientHello that offers only the suites (or only the protocol version) under test, the way
//! scanners such as testssl.sh do. rustls cannot offer weak suites or old protocols, so the
//! score's own handshake would never notice that nginx still accepts them.

use std::net::SocketAddr;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// A protocol version as it appears on the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Version {
    Tls10,
    Tls11,
    Tls12,
}

impl Version {
    fn wire(self) -> [u8; 2] {
        match self {
            Version::Tls10 => [3, 1],
            Version::Tls11 => [3, 2],
            Version::Tls12 => [3, 3],
        }
    }
}

/// A class of cipher suites nobody should still be offered, with their IANA numbers.
pub struct WeakClass {
    pub name: &'static str,
    pub suites: &'static [u16],
}

/// CBC (LUCKY13, padding oracles), CCM/CCM8 (short tags), CAMELLIA and ARIA (not in Mozilla's
/// intermediate profile), and static-RSA key exchange (no forward secrecy).
pub const WEAK_CLASSES: &[WeakClass] = &[
    WeakClass {
        name: "CBC",
        suites: &[
            0xC009, 0xC00A, 0xC013, 0xC014, 0xC023, 0xC024, 0xC027, 0xC028, 0x002F, 0x0035, 0x003C,
            0x003D, 0x0033, 0x0039, 0x0067, 0x006B,
        ],
    },
    WeakClass {
        name: "CCM",
        suites: &[
            0xC09C, 0xC09D, 0xC0A0, 0xC0A1, 0xC0AC, 0xC0AD, 0xC0AE, 0xC0AF, 0xC09E, 0xC09F, 0xC0A2,
            0xC0A3,
        ],
    },
    WeakClass {
        name: "CAMELLIA",
        suites: &[
            0x0041, 0x0084, 0x0045, 0x0088, 0x00BA, 0x00C0, 0xC072, 0xC073, 0xC076, 0xC077, 0xC07A,
            0xC07B, 0xC086, 0xC087, 0xC08A, 0xC08B,
        ],
    },
    WeakClass {
        name: "ARIA",
        suites: &[
            0xC03C, 0xC03D, 0xC048, 0xC049, 0xC04C, 0xC04D, 0xC050, 0xC051, 0xC05C, 0xC05D, 0xC060,
            0xC061,
        ],
    },
    WeakClass {
        name: "static RSA key exchange (no forward secrecy)",
        suites: &[0x009C, 0x009D],
    },
];

/// Suites a client of an old protocol would offer (all CBC: TLS 1.0/1.1 have no AEAD).
pub const LEGACY_SUITES: &[u16] = &[0xC013, 0xC014, 0xC009, 0xC00A, 0x002F, 0x0035];

/// Mozilla's intermediate TLS 1.2 suites, for the session-ticket probe.
pub const GOOD_SUITES: &[u16] = &[0xC02B, 0xC02F, 0xC02C, 0xC030, 0xCCA9, 0xCCA8];

/// What the server answered a ClientHello with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Answer {
    /// A ServerHello choosing `suite`; `ticket` when it agreed to session tickets.
    Accepted { suite: u16, ticket: bool },
    /// An alert, or the connection closed.
    Refused,
}

fn client_hello(version: Version, name: &str, suites: &[u16], ask_ticket: bool) -> Vec<u8> {
    let mut body = Vec::new();
    body.extend_from_slice(&version.wire());
    let random: [u8; 32] = std::array::from_fn(|i| (i as u8).wrapping_mul(37).wrapping_add(11));
    body.extend_from_slice(&random);
    body.push(0); // no session id
    body.extend_from_slice(&((suites.len() * 2) as u16).to_be_bytes());
    for s in suites {
        body.extend_from_slice(&s.to_be_bytes());
    }
    body.extend_from_slice(&[1, 0]); // null compression only
    let mut ext = Vec::new();
    let mut push_ext = |kind: u16, data: &[u8]| {
        ext.extend_from_slice(&kind.to_be_bytes());
        ext.extend_from_slice(&(data.len() as u16).to_be_bytes());
        ext.extend_from_slice(data);
    };
    // server_name
    let host = name.as_bytes();
    let mut sni = Vec::new();
    sni.extend_from_slice(&((host.len() + 3) as u16).to_be_bytes());
    sni.push(0);
    sni.extend_from_slice(&(host.len() as u16).to_be_bytes());
    sni.extend_from_slice(host);
    push_ext(0x0000, &sni);
    // supported_groups: x25519, secp256r1, secp384r1
    push_ext(0x000A, &[0, 6, 0x00, 0x1D, 0x00, 0x17, 0x00, 0x18]);
    // ec_point_formats: uncompressed
    push_ext(0x000B, &[1, 0]);
    // signature_algorithms: ecdsa/rsa-pss/rsa with SHA-256/384, rsa-sha1 for old protocols
    push_ext(
        0x000D,
        &[
            0, 14, 0x04, 0x03, 0x05, 0x03, 0x08, 0x04, 0x08, 0x05, 0x04, 0x01, 0x05, 0x01, 0x02,
            0x01,
        ],
    );
    if ask_ticket {
        push_ext(0x0023, &[]);
    }
    body.extend_from_slice(&(ext.len() as u16).to_be_bytes());
    body.extend_from_slice(&ext);
    let mut handshake = vec![1];
    handshake.extend_from_slice(&(body.len() as u32).to_be_bytes()[1..]);
    handshake.extend_from_slice(&body);
    let mut record = vec![0x16, 3, 1];
    record.extend_from_slice(&(handshake.len() as u16).to_be_bytes());
    record.extend_from_slice(&handshake);
    record
}

/// Parses the first handshake message of the server's answer.
fn parse_answer(bytes: &[u8]) -> Answer {
    // record: type, version(2), length(2); handshake: type, length(3), body
    if bytes.len() < 9 || bytes[0] != 0x16 || bytes[5] != 2 {
        return Answer::Refused;
    }
    let body = &bytes[9..];
    // version(2) random(32) session_id(1+n) suite(2) compression(1) [extensions(2+m)]
    let Some(&sid_len) = body.get(34) else {
        return Answer::Refused;
    };
    let at = 35 + sid_len as usize;
    let Some(suite) = body.get(at..at + 2) else {
        return Answer::Refused;
    };
    let suite = u16::from_be_bytes([suite[0], suite[1]]);
    let mut ticket = false;
    if let Some(len) = body.get(at + 3..at + 5) {
        let len = u16::from_be_bytes([len[0], len[1]]) as usize;
        let mut ext = body.get(at + 5..at + 5 + len).unwrap_or(&[]);
        while ext.len() >= 4 {
            let kind = u16::from_be_bytes([ext[0], ext[1]]);
            let size = u16::from_be_bytes([ext[2], ext[3]]) as usize;
            if kind == 0x0023 {
                ticket = true;
            }
            ext = ext.get(4 + size..).unwrap_or(&[]);
        }
    }
    Answer::Accepted { suite, ticket }
}

/// Sends a ClientHello offering only `suites` at `version` and reports what came back.
pub async fn offer(
    addr: SocketAddr,
    name: &str,
    version: Version,
    suites: &[u16],
    ask_ticket: bool,
) -> std::io::Result<Answer> {
    let mut tcp = tokio::time::timeout(Duration::from_secs(3), TcpStream::connect(addr))
        .await
        .map_err(|_| std::io::Error::new(std::io::ErrorKind::TimedOut, "connect timed out"))??;
    tcp.write_all(&client_hello(version, name, suites, ask_ticket))
        .await?;
    let mut got = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(3), async {
        let mut buf = [0u8; 4096];
        // The ServerHello's record header says how much to wait for.
        while got.len() < 5
            || (got.len() < 5 + u16::from_be_bytes([got[3], got[4]]) as usize && got.len() < 16384)
        {
            match tcp.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => got.extend_from_slice(&buf[..n]),
            }
        }
    })
    .await;
    Ok(parse_answer(&got))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_hello_is_well_formed() {
        let hello = client_hello(Version::Tls12, "a.example", &[0xC02B, 0xC02F], true);
        assert_eq!(hello[0], 0x16);
        let record_len = u16::from_be_bytes([hello[3], hello[4]]) as usize;
        assert_eq!(record_len, hello.len() - 5);
        assert_eq!(hello[5], 1, "client_hello");
        let hs_len = u32::from_be_bytes([0, hello[6], hello[7], hello[8]]) as usize;
        assert_eq!(hs_len, hello.len() - 9);
        assert_eq!(&hello[9..11], &[3, 3]);
    }

    #[test]
    fn parses_a_server_hello_with_a_ticket() {
        let mut body = vec![3, 3];
        body.extend_from_slice(&[0u8; 32]);
        body.push(0);
        body.extend_from_slice(&[0xC0, 0x2F, 0]);
        body.extend_from_slice(&[0, 4, 0x00, 0x23, 0, 0]);
        let mut msg = vec![
            0x16,
            3,
            3,
            0,
            (body.len() + 4) as u8,
            2,
            0,
            0,
            body.len() as u8,
        ];
        msg.extend_from_slice(&body);
        assert_eq!(
            parse_answer(&msg),
            Answer::Accepted {
                suite: 0xC02F,
                ticket: true
            }
        );
        assert_eq!(parse_answer(&[0x15, 3, 3, 0, 2, 2, 40]), Answer::Refused);
    }
}
