//! A test-only alert channel built against the released contract 0.1.0 with `wit-bindgen`
//! directly (the SDK targets the newest contract): a host must keep linking and calling plugins
//! built for every contract version it supports.
//!
//! `validate` fails unless the settings name a `prefix`; `deliver` answers with the prefix, the
//! host's clock and the whole alert as it arrived (its `Debug` form), and logs one line.

wit_bindgen::generate!({
    world: "alert-channel",
    path: "../../../wit/since_v0.1.0",
});

use exports::infrapilot::plugin::channel::Guest;
use infrapilot::plugin::alerts::{Alert, Delivery};
use infrapilot::plugin::types::PluginError;
use infrapilot::plugin::{clock, config, log};

/// The `prefix` setting, read without a JSON parser: `{"prefix":"…"}`.
fn prefix() -> Option<String> {
    let settings = config::settings();
    let (_, rest) = settings.split_once("\"prefix\":\"")?;
    let (value, _) = rest.split_once('"')?;
    Some(value.to_owned())
}

struct Channel;

impl Guest for Channel {
    fn validate() -> Result<(), PluginError> {
        match prefix() {
            Some(_) => Ok(()),
            None => Err(PluginError::InvalidSettings("prefix: required".into())),
        }
    }

    fn deliver(alert: Alert) -> Result<Delivery, PluginError> {
        let prefix =
            prefix().ok_or_else(|| PluginError::InvalidSettings("prefix: required".into()))?;
        log::log(log::Level::Info, &format!("delivering {}", alert.id));
        Ok(Delivery {
            detail: format!("{prefix} at {}: {alert:?}", clock::now_unix_ms()),
        })
    }
}

export!(Channel);
