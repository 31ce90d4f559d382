//! Capability `log`: plugin log lines, sanitised (no forged lines), bounded per call.

use wasmtime::component::{HasSelf, Linker};

use super::Capability;
use crate::bindings::alert_channel::infrapilot::plugin as wit;
use crate::runtime::HostState;

const MAX_LOG_MESSAGE_BYTES: usize = 4096;

pub(super) fn register(linker: &mut Linker<HostState>) -> wasmtime::Result<()> {
    wit::log::add_to_linker::<_, HasSelf<_>>(linker, |s| s)
}

impl wit::log::Host for HostState {
    async fn log(&mut self, level: wit::log::Level, message: String) {
        if self.grant(Capability::Log).is_err() {
            return;
        }
        if self.log_lines >= self.limits.max_log_lines {
            self.dropped_log_lines += 1;
            return;
        }
        self.log_lines += 1;
        // Control characters (newlines, ANSI escapes) would let a plugin forge log lines.
        let mut message: String = message
            .chars()
            .map(|c| {
                if c.is_control() && c != '\t' {
                    '\u{fffd}'
                } else {
                    c
                }
            })
            .collect();
        if message.len() > MAX_LOG_MESSAGE_BYTES {
            let mut cut = MAX_LOG_MESSAGE_BYTES;
            while !message.is_char_boundary(cut) {
                cut -= 1;
            }
            message.truncate(cut);
            message.push('…');
        }
        self.services.log(&self.plugin_id, level, &message);
    }
}

#[cfg(test)]
mod tests {
    use super::super::testing::state;
    use crate::bindings::alert_channel::infrapilot::plugin::log::{Host, Level};

    #[tokio::test]
    async fn lines_are_sanitised_bounded_and_need_the_grant() {
        let (mut denied, recorded) = state(serde_json::json!({}));
        denied.log(Level::Info, "hello".into()).await;
        assert!(recorded.logs.lock().unwrap().is_empty());
        assert_eq!(denied.denials, 1);

        let (mut granted, recorded) = state(serde_json::json!({"log": true}));
        granted
            .log(Level::Info, "forged\n[host] line\u{1b}[31m".into())
            .await;
        granted.log(Level::Info, "x".repeat(10_000)).await;
        let logs = recorded.logs.lock().unwrap();
        assert_eq!(logs[0], "forged\u{fffd}[host] line\u{fffd}[31m");
        assert!(logs[1].len() <= super::MAX_LOG_MESSAGE_BYTES + '…'.len_utf8());
        assert!(logs[1].ends_with('…'));
    }
}
