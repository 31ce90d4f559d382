//! Capability `log`: plugin log lines, sanitised (no forged lines), bounded per call.

use super::Capability;
use crate::contract::log::Level;
use crate::runtime::HostState;

const MAX_LOG_MESSAGE_BYTES: usize = 4096;

impl HostState {
    /// A log line of the plugin, sanitised and counted against the call's bound.
    pub(crate) fn log_line(&mut self, level: Level, message: String) {
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
    use crate::contract::log::Level;

    #[tokio::test]
    async fn lines_are_sanitised_bounded_and_need_the_grant() {
        let (mut denied, recorded) = state(serde_json::json!({}));
        denied.log_line(Level::Info, "hello".into());
        assert!(recorded.logs.lock().unwrap().is_empty());
        assert_eq!(denied.denials, 1);

        let (mut granted, recorded) = state(serde_json::json!({"log": true}));
        granted.log_line(Level::Info, "forged\n[host] line\u{1b}[31m".into());
        granted.log_line(Level::Info, "x".repeat(10_000));
        let logs = recorded.logs.lock().unwrap();
        assert_eq!(logs[0], "forged\u{fffd}[host] line\u{fffd}[31m");
        assert!(logs[1].len() <= super::MAX_LOG_MESSAGE_BYTES + '…'.len_utf8());
        assert!(logs[1].ends_with('…'));
    }
}
