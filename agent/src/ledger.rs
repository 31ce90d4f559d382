//! The agent's record of commands it has run, by idempotency key, kept on disk in the state
//! directory (`commands.json`, 0600). A command delivered again — after a reconnect, or after the
//! host restarted before it stored the result — is answered from here instead of running twice.

use std::collections::HashMap;
use std::sync::Mutex;

use serde::{Deserialize, Serialize};

use crate::state::{StateDir, StateError};

const FILE: &str = "commands.json";
/// How long and how many finished commands are remembered.
const KEEP_MS: i64 = 24 * 3600 * 1000;
const KEEP_MAX: usize = 1000;

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Outcome {
    pub ok: bool,
    pub error: String,
    pub error_kind: String,
    pub payload_json: String,
    pub finished_at_ms: i64,
}

enum Entry {
    Running,
    Done(Outcome),
}

/// What to do with a delivered command.
pub enum Admission {
    /// First delivery: run it, then call [`Ledger::finish`].
    Run,
    /// Running now (delivered again while in progress): its result will follow.
    InProgress,
    /// Ran before: answer with this.
    Done(Outcome),
}

pub struct Ledger {
    entries: Mutex<HashMap<String, Entry>>,
    state: Option<StateDir>,
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

impl Ledger {
    /// Loads the ledger from the state directory (`None`: memory only).
    pub fn open(state: Option<StateDir>) -> Result<Ledger, StateError> {
        let mut entries = HashMap::new();
        if let Some(dir) = &state {
            match dir.read_private(FILE) {
                Ok(text) => {
                    let stored: HashMap<String, Outcome> = serde_json::from_str(&text)
                        .map_err(|e| StateError::Corrupt(dir.path().join(FILE), e.to_string()))?;
                    entries.extend(stored.into_iter().map(|(k, v)| (k, Entry::Done(v))));
                }
                Err(StateError::NotEnrolled(_)) => {}
                Err(e) => return Err(e),
            }
        }
        Ok(Ledger {
            entries: Mutex::new(entries),
            state,
        })
    }

    pub fn admit(&self, key: &str) -> Admission {
        let mut entries = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        match entries.get(key) {
            Some(Entry::Running) => Admission::InProgress,
            Some(Entry::Done(outcome)) => Admission::Done(outcome.clone()),
            None => {
                entries.insert(key.to_owned(), Entry::Running);
                Admission::Run
            }
        }
    }

    /// Records the outcome (on disk before the result is sent).
    pub fn finish(&self, key: &str, outcome: Outcome) {
        let snapshot = {
            let mut entries = self.entries.lock().unwrap_or_else(|e| e.into_inner());
            entries.insert(key.to_owned(), Entry::Done(outcome));
            let cutoff = now_ms() - KEEP_MS;
            entries.retain(|_, e| match e {
                Entry::Running => true,
                Entry::Done(o) => o.finished_at_ms >= cutoff,
            });
            let mut done: Vec<(&String, &Outcome)> = entries
                .iter()
                .filter_map(|(k, e)| match e {
                    Entry::Done(o) => Some((k, o)),
                    Entry::Running => None,
                })
                .collect();
            done.sort_by_key(|(_, o)| std::cmp::Reverse(o.finished_at_ms));
            done.truncate(KEEP_MAX);
            let map: HashMap<&String, &Outcome> = done.into_iter().collect();
            serde_json::to_vec(&map).unwrap_or_default()
        };
        if let Some(dir) = &self.state
            && let Err(e) = dir.write_private(FILE, &snapshot)
        {
            eprintln!("could not record the command ledger: {e}");
        }
    }

    /// Keys that finished, for the hello message.
    pub fn completed_keys(&self) -> Vec<String> {
        let entries = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        entries
            .iter()
            .filter(|(_, e)| matches!(e, Entry::Done(_)))
            .map(|(k, _)| k.clone())
            .collect()
    }
}

pub(crate) fn outcome(ok: bool, error: String, error_kind: &str, payload_json: String) -> Outcome {
    Outcome {
        ok,
        error,
        error_kind: error_kind.to_owned(),
        payload_json,
        finished_at_ms: now_ms(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_key_runs_once_and_survives_a_restart() {
        let dir = std::env::temp_dir().join(format!("ledger-test-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let ledger = Ledger::open(Some(StateDir::new(&dir))).unwrap();
        assert!(matches!(ledger.admit("k1"), Admission::Run));
        assert!(matches!(ledger.admit("k1"), Admission::InProgress));
        ledger.finish("k1", outcome(true, String::new(), "", "{\"a\":1}".into()));
        let reopened = Ledger::open(Some(StateDir::new(&dir))).unwrap();
        match reopened.admit("k1") {
            Admission::Done(o) => assert_eq!(o.payload_json, "{\"a\":1}"),
            _ => panic!("a finished key must be answered from the ledger"),
        }
        assert!(matches!(reopened.admit("k2"), Admission::Run));
        assert_eq!(reopened.completed_keys(), vec!["k1".to_owned()]);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
