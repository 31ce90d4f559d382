//! Mail for plugins: lettre over the host's SMTP settings.

use lettre::message::{Mailbox, MultiPart, SinglePart, header::ContentType};
use lettre::transport::smtp::authentication::Credentials;
use lettre::transport::smtp::client::{Tls, TlsParameters};
use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};

use infrapilot_plugin_runtime::contract::mail::{MailError, Message as PluginMessage};

/// How the host talks to its SMTP server.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SmtpSecurity {
    /// Plain SMTP (a relay on the same machine or network).
    None,
    /// STARTTLS required.
    StartTls,
    /// TLS from the first byte (port 465).
    Tls,
}

impl std::str::FromStr for SmtpSecurity {
    type Err = String;
    fn from_str(s: &str) -> Result<SmtpSecurity, String> {
        match s {
            "none" => Ok(SmtpSecurity::None),
            "starttls" => Ok(SmtpSecurity::StartTls),
            "tls" => Ok(SmtpSecurity::Tls),
            other => Err(format!("{other:?} is not none, starttls or tls")),
        }
    }
}

#[derive(Debug, Clone)]
pub struct SmtpSettings {
    pub host: String,
    pub port: u16,
    pub security: SmtpSecurity,
    pub username: Option<String>,
    pub password: Option<String>,
    /// The sender of every message (`InfraPilot <alerts@example.com>`).
    pub from: String,
}

/// Sends plugin mail with the host's settings.
#[derive(Clone)]
pub struct Mailer {
    transport: AsyncSmtpTransport<Tokio1Executor>,
    from: Mailbox,
}

impl Mailer {
    pub fn new(settings: &SmtpSettings) -> Result<Mailer, String> {
        let from: Mailbox = settings
            .from
            .parse()
            .map_err(|e| format!("smtp from: {e}"))?;
        let builder = AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(&settings.host)
            .port(settings.port)
            .timeout(Some(std::time::Duration::from_secs(10)));
        let tls =
            |host: &str| TlsParameters::new(host.to_owned()).map_err(|e| format!("smtp tls: {e}"));
        let builder = match settings.security {
            SmtpSecurity::None => builder.tls(Tls::None),
            SmtpSecurity::StartTls => builder.tls(Tls::Required(tls(&settings.host)?)),
            SmtpSecurity::Tls => builder.tls(Tls::Wrapper(tls(&settings.host)?)),
        };
        let builder = match (&settings.username, &settings.password) {
            (Some(u), Some(p)) => builder.credentials(Credentials::new(u.clone(), p.clone())),
            _ => builder,
        };
        Ok(Mailer {
            transport: builder.build(),
            from,
        })
    }

    pub async fn send(&self, message: PluginMessage) -> Result<(), MailError> {
        let mut builder = Message::builder()
            .from(self.from.clone())
            .subject(message.subject.clone());
        for to in &message.to {
            let mailbox: Mailbox = to
                .parse()
                .map_err(|e| MailError::InvalidMessage(format!("recipient {to:?}: {e}")))?;
            builder = builder.to(mailbox);
        }
        let email = match message.html_body {
            None => builder.singlepart(
                SinglePart::builder()
                    .header(ContentType::TEXT_PLAIN)
                    .body(message.text_body),
            ),
            Some(html) => {
                builder.multipart(MultiPart::alternative_plain_html(message.text_body, html))
            }
        }
        .map_err(|e| MailError::InvalidMessage(e.to_string()))?;
        self.transport
            .send(email)
            .await
            .map(|_| ())
            .map_err(|e| MailError::Transport(e.to_string()))
    }
}
