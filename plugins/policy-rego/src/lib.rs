//! Policies of your own in Rego (Open Policy Agent's language), as a `policy-engine` plugin: the
//! `rego` policy type. A policy's conditions are `{"module": "<Rego v1 source>"}`; the module
//! declares a `deny` rule — a set of messages — and every message it yields for a request is a
//! reason the request breaks the policy (the convention of OPA's Gatekeeper and conftest):
//!
//! ```rego
//! package infrapilot.no_root
//!
//! deny contains msg if {
//!     input.action in {"container.create", "container.start", "container.restart"}
//!     input.container.runs_as_root
//!     msg := sprintf("%s runs as root", [input.container.name])
//! }
//! ```
//!
//! `input` is the host's normalised request (the fields of the `policy-model` interface in
//! snake case: `action` as `container.start` …, `node.labels` and `container.labels` as objects,
//! mounts with `kind` `bind`/`volume`/`tmpfs`/`device`/`volumes_from`). The interpreter is the
//! `regorus` crate, compiled into this component; a prepared set holds each policy's compiled
//! module for as long as the host keeps it.

use std::cell::RefCell;

use infrapilot_plugin_sdk::policy::{
    Container, Finding, GuestPolicySet, PluginError, Policy, PolicyEngine, PolicySet, PolicyType,
    ProxyHost, Request,
};
use serde_json::{Map, Value, json};

struct Rego;

const SCHEMA: &str = r#"{"type":"object","additionalProperties":false,"required":["module"],"properties":{"module":{"type":"string","title":"Rego module","description":"Rego v1. Declare `deny contains msg if { … }`: each message is a reason the request breaks the policy. `input` is the normalised request.","minLength":1,"maxLength":60000,"format":"rego"}}}"#;

/// A module read from a policy's conditions: its engine and the path of its `deny` rule.
struct Compiled {
    engine: regorus::Engine,
    deny: String,
}

fn compile(conditions: &str) -> Result<Compiled, String> {
    let value: Value =
        serde_json::from_str(conditions).map_err(|e| format!("conditions: not JSON ({e})"))?;
    let Value::Object(map) = value else {
        return Err("conditions: must be an object".into());
    };
    if let Some(unknown) = map.keys().find(|k| *k != "module") {
        return Err(format!(
            "conditions.{}: unknown field (fields: module)",
            unknown.chars().take(64).collect::<String>()
        ));
    }
    let module = match map.get("module") {
        Some(Value::String(m)) if !m.trim().is_empty() => m.clone(),
        _ => return Err("conditions.module: the Rego module (a string) is required".into()),
    };
    if module.len() > 60_000 {
        return Err("conditions.module: at most 60000 bytes".into());
    }
    let mut engine = regorus::Engine::new();
    let package = engine
        .add_policy("policy.rego".into(), module)
        .map_err(|e| format!("conditions.module: {}", first_line(&e.to_string())))?;
    let declares_deny = engine
        .has_declared_rule_rooted_at("policy.rego", "deny")
        .unwrap_or(false);
    if !declares_deny {
        return Err(format!(
            "conditions.module: the module declares no `deny` rule ({package}.deny)"
        ));
    }
    Ok(Compiled {
        engine,
        deny: format!("{package}.deny"),
    })
}

fn first_line(message: &str) -> String {
    message
        .lines()
        .take(6)
        .collect::<Vec<_>>()
        .join(" ")
        .chars()
        .take(900)
        .collect()
}

fn pairs(list: &[(String, String)]) -> Value {
    Value::Object(
        list.iter()
            .map(|(k, v)| (k.clone(), Value::String(v.clone())))
            .collect::<Map<_, _>>(),
    )
}

fn container(c: &Container) -> Value {
    json!({
        "name": c.name,
        "image": c.image,
        "user": c.user,
        "runs_as_root": c.runs_as_root,
        "privileged": c.privileged,
        "capabilities": c.capabilities,
        "all_capabilities": c.all_capabilities,
        "host_namespaces": c.host_namespaces,
        "joins_containers": c.joins_containers,
        "seccomp_unconfined": c.seccomp_unconfined,
        "apparmor_unconfined": c.apparmor_unconfined,
        "selinux_disabled": c.selinux_disabled,
        "system_paths_unconfined": c.system_paths_unconfined,
        "mounts": c.mounts.iter().map(|m| json!({
            "kind": m.kind.as_str(), "source": m.source, "target": m.target, "read_only": m.read_only,
        })).collect::<Vec<_>>(),
        "restart_policy": c.restart_policy,
        "healthcheck": c.healthcheck,
        "labels": pairs(&c.labels),
        "created_at_unix_ms": c.created_at_unix_ms,
    })
}

fn proxy_host(h: &ProxyHost) -> Value {
    json!({"id": h.id, "domains": h.domains, "tls": h.tls, "redirect_http": h.redirect_http,
        "access_restricted": h.access_restricted})
}

/// The request as Rego's `input`.
fn input(r: &Request) -> Value {
    json!({
        "action": r.action.as_str(),
        "actor": r.actor,
        "actor_role": r.actor_role,
        "node": {"id": r.node_id, "name": r.node_name, "labels": pairs(&r.node_labels)},
        "container": r.container.as_ref().map(container),
        "command": r.command,
        "proxy_hosts": r.proxy_hosts.iter().map(proxy_host).collect::<Vec<_>>(),
        "certificate": r.certificate,
        "now_unix_ms": r.now_unix_ms,
    })
}

/// The messages of the compiled module's `deny` rule for `input`.
fn deny(compiled: &mut Compiled, input: &regorus::Value) -> Result<Vec<String>, String> {
    compiled.engine.set_input(input.clone());
    let result = compiled
        .engine
        .eval_rule(compiled.deny.clone())
        .map_err(|e| {
            format!(
                "evaluating {}: {}",
                compiled.deny,
                first_line(&e.to_string())
            )
        })?;
    let messages = match &result {
        regorus::Value::Undefined => return Ok(Vec::new()),
        regorus::Value::Set(set) => set.iter().cloned().collect::<Vec<_>>(),
        regorus::Value::Array(items) => items.iter().cloned().collect(),
        other => {
            return Err(format!(
                "{} must be a set of messages, not {other}",
                compiled.deny
            ));
        }
    };
    Ok(messages
        .into_iter()
        .take(32)
        .map(|m| match m.as_string() {
            Ok(s) => s.to_string(),
            Err(_) => m.to_string(),
        })
        .map(|mut m: String| {
            if m.len() > 1000 {
                let mut at = 997;
                while !m.is_char_boundary(at) {
                    at -= 1;
                }
                m.truncate(at);
                m.push('…');
            }
            m
        })
        .collect())
}

impl PolicyEngine for Rego {
    type PolicySet = Prepared;

    fn policy_types() -> Vec<PolicyType> {
        vec![PolicyType {
            id: "rego".into(),
            title: "Rego policy".into(),
            description: "A policy of your own in Rego v1: its `deny` rule yields the reasons a request breaks it. `input` is the normalised request (action, actor, node, container, command, proxy_hosts).".into(),
            conditions_schema: SCHEMA.into(),
        }]
    }

    fn check(policy: Policy) -> Result<(), PluginError> {
        if policy.policy_type != "rego" {
            return Err(PluginError::InvalidSettings(format!(
                "policy_type: {:?} is not rego",
                policy.policy_type.chars().take(64).collect::<String>()
            )));
        }
        compile(&policy.conditions)
            .map(|_| ())
            .map_err(PluginError::InvalidSettings)
    }

    fn prepare(policies: Vec<Policy>) -> Result<PolicySet, PluginError> {
        let mut modules = Vec::with_capacity(policies.len());
        for policy in policies {
            if policy.policy_type != "rego" {
                return Err(PluginError::InvalidSettings(format!(
                    "policy {}: type {} is not rego",
                    policy.id, policy.policy_type
                )));
            }
            let compiled = compile(&policy.conditions)
                .map_err(|e| PluginError::InvalidSettings(format!("policy {}: {e}", policy.id)))?;
            modules.push((policy.id, compiled));
        }
        Ok(PolicySet::new(Prepared {
            modules: RefCell::new(modules),
        }))
    }
}

/// Policies compiled once, by id (evaluating sets a module's input, hence the cell).
struct Prepared {
    modules: RefCell<Vec<(String, Compiled)>>,
}

impl GuestPolicySet for Prepared {
    fn evaluate(&self, request: Request) -> Result<Vec<Finding>, PluginError> {
        let input = regorus::Value::from_json_str(&input(&request).to_string())
            .map_err(|e| PluginError::Failed(format!("the request as Rego input: {e}")))?;
        let mut findings = Vec::new();
        for (id, compiled) in self.modules.borrow_mut().iter_mut() {
            let reasons = deny(compiled, &input)
                .map_err(|e| PluginError::Failed(format!("policy {id}: {e}")))?;
            if !reasons.is_empty() {
                findings.push(Finding {
                    policy_id: id.clone(),
                    reasons,
                });
            }
        }
        Ok(findings)
    }
}

infrapilot_plugin_sdk::export_policy_engine!(Rego);
