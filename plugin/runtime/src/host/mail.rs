//! Capability `mail`: messages through the host's SMTP settings, to plain addresses only.

use super::Capability;
use crate::contract::mail::{MailError, Message};
use crate::runtime::HostState;

/// A plain `local@domain` address: no display name, comments, quotes, spaces or control characters.
fn plain_address(address: &str) -> bool {
    let Some((local, domain)) = address.split_once('@') else {
        return false;
    };
    (3..=254).contains(&address.len())
        && !local.is_empty()
        && local.len() <= 64
        && domain.contains('.')
        && !domain.starts_with('.')
        && !domain.ends_with('.')
        && !domain.contains('@')
        && address.chars().all(|c| {
            c.is_ascii_graphic()
                && !matches!(
                    c,
                    '<' | '>' | '(' | ')' | ',' | ';' | ':' | '"' | '[' | ']' | '\\'
                )
        })
}

impl HostState {
    /// A plugin's mail: the grant, plain recipients, bounded subject and body.
    pub(crate) async fn mail_send(&mut self, message: Message) -> Result<(), MailError> {
        self.grant(Capability::Mail).map_err(MailError::Denied)?;
        if message.to.is_empty() || message.to.len() > 50 {
            return Err(MailError::InvalidMessage("to: 1–50 recipients".into()));
        }
        if let Some((i, _)) = message
            .to
            .iter()
            .enumerate()
            .find(|(_, a)| !plain_address(a))
        {
            return Err(MailError::InvalidMessage(format!(
                "to.{i}: not a plain e-mail address"
            )));
        }
        if message.subject.chars().any(char::is_control) || message.subject.len() > 250 {
            return Err(MailError::InvalidMessage(
                "subject: at most 250 characters, no control characters".into(),
            ));
        }
        if message.text_body.len() + message.html_body.as_ref().map_or(0, String::len) > 1 << 20 {
            return Err(MailError::InvalidMessage("body: larger than 1 MiB".into()));
        }
        self.services.send_mail(&self.plugin_id, message).await
    }
}

#[cfg(test)]
mod tests {
    use super::super::testing::state;
    use crate::contract::mail::{MailError, Message};

    fn to(address: &str) -> Message {
        Message {
            to: vec![address.into()],
            subject: "s".into(),
            text_body: "b".into(),
            html_body: None,
        }
    }

    #[tokio::test]
    async fn plain_addresses_only_and_only_when_granted() {
        let (mut denied, _) = state(serde_json::json!({}));
        assert!(matches!(
            denied.mail_send(to("ops@example.com")).await,
            Err(MailError::Denied(_))
        ));
        let (mut granted, recorded) = state(serde_json::json!({"mail": true}));
        assert!(granted.mail_send(to("ops@example.com")).await.is_ok());
        for bad in [
            "Ops <ops@example.com>",
            "ops@example.com\r\nBcc: x@y.z",
            "ops",
            "a@b",
        ] {
            assert!(
                matches!(
                    granted.mail_send(to(bad)).await,
                    Err(MailError::InvalidMessage(_))
                ),
                "{bad}"
            );
        }
        assert_eq!(recorded.mails.lock().unwrap().len(), 1);
    }
}
