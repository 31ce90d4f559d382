//! Test a built plugin component from `cargo test`: the component runs in the real plugin
//! runtime (wasmtime, capability checks, limits) against [`FakeHost`], which records every host
//! call (HTTP requests, mails, log lines, key/value writes) and answers HTTP with a function you
//! give it.
//!
//! ```ignore
//! let host = FakeHost::new().respond(|_req| Ok(FakeHost::status(200)));
//! let plugin = TestPlugin::load("target/plugins/my_channel.wasm", "manifest.json", host.clone())?;
//! let delivery = plugin.deliver(json!({"url": "https://example.com/hook"}), &[], sample_alert()).await?;
//! assert_eq!(host.requests()[0].url, "https://example.com/hook");
//! ```

use std::collections::HashMap;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use infrapilot_plugin_runtime::contract::http::{HttpError, Request, Response};
use infrapilot_plugin_runtime::contract::kv::KvError;
use infrapilot_plugin_runtime::contract::log::Level;
use infrapilot_plugin_runtime::contract::mail::{MailError, Message};
use infrapilot_plugin_runtime::runtime::{CallReport, RuntimeConfig};
use infrapilot_plugin_runtime::{AlertChannelPlugin, HostServices, Invocation, Manifest, Runtime};

pub use infrapilot_plugin_runtime::HookError;
pub use infrapilot_plugin_runtime::contract::{
    Alert, AlertState, Delivery, Header, PluginError, Severity,
};
pub use infrapilot_plugin_runtime::contract::{http, log, mail};
pub use infrapilot_plugin_runtime::runtime::Limits;

type Responder = dyn Fn(&Request) -> Result<Response, HttpError> + Send + Sync;

/// A host that records what the plugin asks of it.
#[derive(Clone)]
pub struct FakeHost {
    inner: Arc<Recorded>,
}

struct Recorded {
    responder: Mutex<Arc<Responder>>,
    requests: Mutex<Vec<Request>>,
    mails: Mutex<Vec<Message>>,
    logs: Mutex<Vec<(Level, String)>>,
    kv: Mutex<HashMap<String, Vec<u8>>>,
    now_ms: Mutex<u64>,
    mail_configured: Mutex<bool>,
}

impl Default for FakeHost {
    fn default() -> FakeHost {
        FakeHost::new()
    }
}

impl FakeHost {
    /// A host whose HTTP answers 200 with an empty body, with mail configured, at a fixed time.
    pub fn new() -> FakeHost {
        FakeHost {
            inner: Arc::new(Recorded {
                responder: Mutex::new(Arc::new(|_| Ok(FakeHost::status(200)))),
                requests: Mutex::default(),
                mails: Mutex::default(),
                logs: Mutex::default(),
                kv: Mutex::default(),
                now_ms: Mutex::new(1_767_225_600_000),
                mail_configured: Mutex::new(true),
            }),
        }
    }

    /// How HTTP requests are answered from now on.
    pub fn respond(
        self,
        f: impl Fn(&Request) -> Result<Response, HttpError> + Send + Sync + 'static,
    ) -> FakeHost {
        *self.inner.responder.lock().unwrap() = Arc::new(f);
        self
    }

    /// A response with `status` and no body.
    pub fn status(status: u16) -> Response {
        Response {
            status,
            headers: Vec::new(),
            body: Vec::new(),
        }
    }

    pub fn without_mail(self) -> FakeHost {
        *self.inner.mail_configured.lock().unwrap() = false;
        self
    }

    pub fn at_unix_ms(self, ms: u64) -> FakeHost {
        *self.inner.now_ms.lock().unwrap() = ms;
        self
    }

    pub fn requests(&self) -> Vec<Request> {
        self.inner.requests.lock().unwrap().clone()
    }

    pub fn mails(&self) -> Vec<Message> {
        self.inner.mails.lock().unwrap().clone()
    }

    pub fn logs(&self) -> Vec<(Level, String)> {
        self.inner.logs.lock().unwrap().clone()
    }

    pub fn kv(&self) -> HashMap<String, Vec<u8>> {
        self.inner.kv.lock().unwrap().clone()
    }
}

#[async_trait]
impl HostServices for FakeHost {
    fn log(&self, _plugin_id: &str, level: Level, message: &str) {
        self.inner
            .logs
            .lock()
            .unwrap()
            .push((level, message.to_owned()));
    }

    async fn http_fetch(
        &self,
        _plugin_id: &str,
        request: Request,
        _timeout: Duration,
    ) -> Result<Response, HttpError> {
        self.inner.requests.lock().unwrap().push(request.clone());
        let responder = self.inner.responder.lock().unwrap().clone();
        responder(&request)
    }

    async fn send_mail(&self, _plugin_id: &str, message: Message) -> Result<(), MailError> {
        if !*self.inner.mail_configured.lock().unwrap() {
            return Err(MailError::NotConfigured);
        }
        self.inner.mails.lock().unwrap().push(message);
        Ok(())
    }

    async fn kv_get(&self, _plugin_id: &str, key: &str) -> Result<Option<Vec<u8>>, KvError> {
        Ok(self.inner.kv.lock().unwrap().get(key).cloned())
    }

    async fn kv_set(&self, _plugin_id: &str, key: &str, value: Vec<u8>) -> Result<(), KvError> {
        self.inner.kv.lock().unwrap().insert(key.to_owned(), value);
        Ok(())
    }

    async fn kv_delete(&self, _plugin_id: &str, key: &str) -> Result<(), KvError> {
        self.inner.kv.lock().unwrap().remove(key);
        Ok(())
    }

    fn now_unix_ms(&self) -> u64 {
        *self.inner.now_ms.lock().unwrap()
    }
}

/// A built alert-channel component loaded into the real runtime, every requested capability granted.
pub struct TestPlugin {
    _runtime: Runtime,
    plugin: AlertChannelPlugin,
    host: FakeHost,
    pub manifest: Manifest,
}

impl TestPlugin {
    /// Loads `component` (a `.wasm` component) with `manifest` (its `manifest.json`).
    pub fn load(
        component: impl AsRef<Path>,
        manifest: impl AsRef<Path>,
        host: FakeHost,
    ) -> Result<TestPlugin, String> {
        TestPlugin::load_with_limits(component, manifest, host, Limits::default())
    }

    pub fn load_with_limits(
        component: impl AsRef<Path>,
        manifest: impl AsRef<Path>,
        host: FakeHost,
        limits: Limits,
    ) -> Result<TestPlugin, String> {
        let read = |p: &Path| {
            std::fs::read(p).map_err(|e| {
                format!(
                    "{}: {e} (build the plugin first: scripts/build-plugins.sh)",
                    p.display()
                )
            })
        };
        let manifest = Manifest::parse(&read(manifest.as_ref())?).map_err(|e| e.to_string())?;
        let runtime = Runtime::new(RuntimeConfig {
            limits,
            max_instances: 16,
            ..RuntimeConfig::default()
        })
        .map_err(|e| e.to_string())?;
        let compiled = runtime
            .compile(&read(component.as_ref())?)
            .map_err(|e| e.to_string())?;
        let plugin = runtime
            .load::<AlertChannelPlugin>(&manifest, &compiled, &manifest.capabilities)
            .map_err(|e| e.to_string())?;
        Ok(TestPlugin {
            _runtime: runtime,
            plugin,
            host,
            manifest,
        })
    }

    fn invocation(&self, settings: serde_json::Value, secrets: &[(&str, &str)]) -> Invocation {
        Invocation {
            settings,
            secrets: secrets
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect(),
            services: Arc::new(self.host.clone()),
        }
    }

    pub async fn validate(
        &self,
        settings: serde_json::Value,
        secrets: &[(&str, &str)],
    ) -> Result<CallReport, HookError> {
        self.plugin
            .validate(&self.invocation(settings, secrets))
            .await
    }

    pub async fn deliver(
        &self,
        settings: serde_json::Value,
        secrets: &[(&str, &str)],
        alert: &Alert,
    ) -> Result<Delivery, HookError> {
        self.plugin
            .deliver(&self.invocation(settings, secrets), alert)
            .await
            .map(|(delivery, _)| delivery)
    }
}

/// A firing critical alert about container `web-1` on node `node-a`.
pub fn sample_alert() -> Alert {
    Alert {
        id: "al-0001".into(),
        rule_id: "rule-crash".into(),
        rule_name: "Container crashed".into(),
        state: AlertState::Firing,
        severity: Severity::Critical,
        title: "web-1 exited with code 1".into(),
        summary: "The container web-1 on node-a exited with code 1.".into(),
        node: Some("node-a".into()),
        target: Some("web-1".into()),
        labels: vec![("env".into(), "prod".into())],
        started_at_unix_ms: 1_767_225_600_000,
        resolved_at_unix_ms: None,
        url: Some("https://infrapilot.example/alerts/al-0001".into()),
    }
}
