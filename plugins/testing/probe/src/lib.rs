//! A test-only plugin. The alert's title says what to do:
//! `loop`, `alloc`, `trap`, `huge-output`, `log-flood`, `fetch <url>`, `fetch-auth <url>`, `secret <name>`,
//! `settings`, `mail <to>`, `kv`, `clock`, `random`, `echo` (the alert as it arrived), `ok`. For a "send test" from the host
//! (state `test`), the channel's `note` setting says it instead.

use infrapilot_plugin_sdk::channel::{
    Alert, AlertChannel, AlertState, Delivery, PluginError, RequestBuilder, ResponseExt, clock,
    config, kv, log, mail, random, settings,
};

fn done(detail: impl Into<String>) -> Result<Delivery, PluginError> {
    Ok(Delivery {
        detail: detail.into(),
    })
}

struct Probe;

impl AlertChannel for Probe {
    fn validate() -> Result<(), PluginError> {
        Ok(())
    }

    fn deliver(alert: Alert) -> Result<Delivery, PluginError> {
        let command = if alert.state == AlertState::Test {
            let s: infrapilot_plugin_sdk::json::Value = settings()?;
            s["note"].as_str().unwrap_or("ok").to_owned()
        } else {
            alert.title.clone()
        };
        let (verb, rest) = command.split_once(' ').unwrap_or((command.as_str(), ""));
        match verb {
            "ok" => done("ok"),
            // The alert as it arrived, to compare what each contract version carries.
            "echo" => done(format!("probe at {}: {alert:?}", clock::now_unix_ms())),
            "loop" => {
                let mut n: u64 = 0;
                loop {
                    n = std::hint::black_box(n.wrapping_add(1));
                }
            }
            "alloc" => {
                let mut hoard: Vec<Vec<u8>> = Vec::new();
                loop {
                    hoard.push(std::hint::black_box(vec![1u8; 1 << 20]));
                }
            }
            "trap" => panic!("the probe was asked to trap"),
            "huge-output" => done("x".repeat(16 << 20)),
            "log-flood" => {
                for i in 0..100_000 {
                    log::log(log::Level::Info, &format!("flood line {i}"));
                }
                done("flooded")
            }
            "fetch" => {
                let response = RequestBuilder::get(rest).send()?;
                done(format!("{} {}", response.status, response.text()))
            }
            // With credentials and a harmless header, to see which survive redirects.
            "fetch-auth" => {
                let response = RequestBuilder::get(rest)
                    .header("authorization", "Bearer probe-secret")
                    .header("x-api-key", "probe-key")
                    .header("accept", "text/plain")
                    .send()?;
                done(format!("{} {}", response.status, response.text()))
            }
            "secret" => done(config::secret(rest)?),
            "settings" => done(config::settings()),
            "mail" => {
                mail::send(&mail::Message {
                    to: vec![rest.to_owned()],
                    subject: "probe".into(),
                    text_body: "probe mail".into(),
                    html_body: None,
                })?;
                done("mailed")
            }
            "kv" => {
                let count = kv::get("count")
                    .map_err(|e| PluginError::Failed(format!("{e:?}")))?
                    .map(|v| u32::from_le_bytes(v.try_into().unwrap_or([0; 4])))
                    .unwrap_or(0)
                    + 1;
                kv::set("count", &count.to_le_bytes())
                    .map_err(|e| PluginError::Failed(format!("{e:?}")))?;
                done(count.to_string())
            }
            "clock" => done(clock::now_unix_ms().to_string()),
            "random" => done(format!("{:?}", random::fill(16))),
            other => Err(PluginError::Failed(format!("unknown probe verb {other}"))),
        }
    }
}

infrapilot_plugin_sdk::export_alert_channel!(Probe);
