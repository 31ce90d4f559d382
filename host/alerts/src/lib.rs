//! Alerting: rules ([`rules`]) evaluated by the [`engine`] over stored Docker events, container
//! usage samples and node status; history (firing → resolved) and deliveries through
//! alert-channel plugins with retries.

pub mod engine;
pub mod rules;

pub use engine::{AlertEngine, AlertError, EngineConfig, TestOutcome};
pub use rules::{RuleError, RuleKind, RuleParams, Severity};
