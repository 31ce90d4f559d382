//! The built-in policy templates, as a `policy-engine` plugin. Each template is a policy type
//! with conditions (a JSON object; its JSON Schema builds the dashboard's form); the host hands
//! over requests already normalised, so a template only compares canonical values: `runs-as-root`
//! for every spelling of root, one list of mounts with lexical host paths, capabilities in upper
//! case without `CAP_`.

use infrapilot_plugin_sdk::policy::{
    Action, Container, Finding, GuestPolicySet, MountKind, PluginError, Policy, PolicyEngine,
    PolicySet, PolicyType, Request,
};
use serde_json::{Map, Value};

struct Templates;

/// A template with its conditions read.
#[derive(Clone, Debug, PartialEq)]
enum Rule {
    NoRoot {
        allow_named_users: bool,
    },
    NoPrivileged {
        denied_capabilities: Vec<String>,
        allow_devices: bool,
        allow_joining_containers: bool,
    },
    NoSensitiveMounts {
        paths: Vec<String>,
        allow_volumes_from: bool,
    },
    RequireRestartPolicy {
        allowed: Vec<String>,
    },
    RequireHealthcheck,
    RequireSsl {
        require_redirect: bool,
        include_restricted: bool,
    },
    NoExecProduction {
        label: String,
        values: Vec<String>,
    },
    MaxContainerAge {
        max_age_days: i64,
    },
}

const DANGEROUS_CAPABILITIES: &[&str] = &[
    "SYS_ADMIN",
    "SYS_MODULE",
    "SYS_RAWIO",
    "SYS_PTRACE",
    "SYS_BOOT",
    "DAC_READ_SEARCH",
    "BPF",
    "PERFMON",
    "MAC_ADMIN",
    "MAC_OVERRIDE",
    "SYS_TIME",
    "AUDIT_CONTROL",
    "SYSLOG",
];

const SENSITIVE_PATHS: &[&str] = &[
    "/",
    "/etc",
    "/var/lib/docker",
    "/var/run/docker.sock",
    "/run/docker.sock",
    "/run/containerd",
    "/var/run/containerd",
    "/proc",
    "/sys",
    "/boot",
    "/root",
    "/dev",
    "/var/lib/infrapilot-agent",
    "/var/lib/infrapilot",
    "/var/lib/containerd",
    "/var/lib/kubelet",
    "/usr",
    "/bin",
    "/sbin",
    "/lib",
    "/lib64",
    "/var/spool/cron",
];

const RESTART_POLICIES: &[&str] = &["always", "unless-stopped", "on-failure"];

/// The templates: id, title, description, conditions schema.
const TEMPLATES: &[(&str, &str, &str, &str)] = &[
    (
        "no_root_containers",
        "No root containers",
        "Containers must not run as root: uid 0 in any spelling (\"\", \"0\", \"root\", \"0:0\" …), including an image's default user when none is set. A user name (not a number) counts too unless allowed: only the image knows its uid.",
        r#"{"type":"object","additionalProperties":false,"properties":{"allow_named_users":{"type":"boolean","title":"Allow user names (their uid is the image's business)","default":false}}}"#,
    ),
    (
        "no_privileged",
        "No privileged containers",
        "No privileged mode, no capability ALL or any of the listed capabilities, no host PID/IPC/network/UTS/user namespace, no joining another container's namespaces unless allowed (it may share the host's), no unconfined seccomp, AppArmor, SELinux or system paths, no host devices unless allowed.",
        r#"{"type":"object","additionalProperties":false,"properties":{"denied_capabilities":{"type":"array","title":"Denied capabilities","description":"Capabilities a container may not add (besides ALL), without CAP_.","items":{"type":"string","pattern":"^[A-Za-z_]{1,64}$"},"maxItems":64,"default":["SYS_ADMIN","SYS_MODULE","SYS_RAWIO","SYS_PTRACE","SYS_BOOT","DAC_READ_SEARCH","BPF","PERFMON","MAC_ADMIN","MAC_OVERRIDE","SYS_TIME","AUDIT_CONTROL","SYSLOG"]},"allow_devices":{"type":"boolean","title":"Allow host devices","default":false},"allow_joining_containers":{"type":"boolean","title":"Allow joining another container's namespaces","default":false}}}"#,
    ),
    (
        "no_sensitive_mounts",
        "No sensitive host mounts",
        "No bind mount or device of a listed host path, of a path inside one, or of a directory that holds one (mounting /var exposes /var/lib/docker); volumes-from (which carries another container's mounts) unless allowed.",
        r#"{"type":"object","additionalProperties":false,"properties":{"paths":{"type":"array","title":"Sensitive host paths","items":{"type":"string","pattern":"^/","maxLength":1024},"maxItems":128,"default":["/","/etc","/var/lib/docker","/var/run/docker.sock","/run/docker.sock","/run/containerd","/var/run/containerd","/proc","/sys","/boot","/root","/dev","/var/lib/infrapilot-agent","/var/lib/infrapilot","/var/lib/containerd","/var/lib/kubelet","/usr","/bin","/sbin","/lib","/lib64","/var/spool/cron"]},"allow_volumes_from":{"type":"boolean","title":"Allow volumes-from","default":false}}}"#,
    ),
    (
        "require_restart_policy",
        "Require a restart policy",
        "Containers must have one of the allowed restart policies.",
        r#"{"type":"object","additionalProperties":false,"properties":{"allowed":{"type":"array","title":"Allowed restart policies","items":{"type":"string","enum":["always","unless-stopped","on-failure"]},"minItems":1,"default":["always","unless-stopped","on-failure"]}}}"#,
    ),
    (
        "require_healthcheck",
        "Require a healthcheck",
        "Containers must define a healthcheck (their own or their image's), not disable it.",
        r#"{"type":"object","additionalProperties":false,"properties":{}}"#,
    ),
    (
        "require_ssl",
        "Require TLS on public proxy hosts",
        "Proxy hosts reachable by everyone must serve HTTPS (and, if required, redirect HTTP to it). Hosts whose access rules end in a deny of everyone else count as not public unless included.",
        r#"{"type":"object","additionalProperties":false,"properties":{"require_redirect":{"type":"boolean","title":"Require the HTTP to HTTPS redirect","default":false},"include_restricted":{"type":"boolean","title":"Also hosts restricted by access rules","default":false}}}"#,
    ),
    (
        "no_exec_production",
        "No exec on production nodes",
        "No terminal (exec) in containers of nodes whose label has one of the values.",
        r#"{"type":"object","additionalProperties":false,"properties":{"label":{"type":"string","title":"Node label","minLength":1,"maxLength":128,"default":"env"},"values":{"type":"array","title":"Values (any case)","items":{"type":"string","minLength":1,"maxLength":256},"minItems":1,"maxItems":64,"default":["production"]}}}"#,
    ),
    (
        "max_container_age",
        "Maximum container age",
        "Containers older than the limit (since Docker created them) must be recreated: starting or restarting one is refused, and the audit of running containers records it.",
        r#"{"type":"object","additionalProperties":false,"properties":{"max_age_days":{"type":"integer","title":"Maximum age (days)","minimum":1,"maximum":3650,"default":30}}}"#,
    ),
];

/// The conditions' object, with a field the template does not have refused.
fn fields(conditions: &str, known: &[&str]) -> Result<Map<String, Value>, String> {
    if conditions.trim().is_empty() {
        return Ok(Map::new());
    }
    let value: Value =
        serde_json::from_str(conditions).map_err(|e| format!("conditions: not JSON ({e})"))?;
    let Value::Object(map) = value else {
        return Err("conditions: must be an object".into());
    };
    if let Some(unknown) = map.keys().find(|k| !known.contains(&k.as_str())) {
        let known = if known.is_empty() {
            "none".to_owned()
        } else {
            known.join(", ")
        };
        return Err(format!(
            "conditions.{}: unknown field (fields: {known})",
            unknown.chars().take(64).collect::<String>()
        ));
    }
    Ok(map)
}

fn flag(map: &Map<String, Value>, key: &str) -> Result<bool, String> {
    match map.get(key) {
        None | Some(Value::Null) => Ok(false),
        Some(Value::Bool(b)) => Ok(*b),
        Some(_) => Err(format!("conditions.{key}: must be true or false")),
    }
}

fn strings(
    map: &Map<String, Value>,
    key: &str,
    default: &[&str],
    max_items: usize,
) -> Result<Vec<String>, String> {
    let Some(value) = map.get(key).filter(|v| !v.is_null()) else {
        return Ok(default.iter().map(|s| (*s).to_owned()).collect());
    };
    let Value::Array(items) = value else {
        return Err(format!("conditions.{key}: must be a list of strings"));
    };
    if items.len() > max_items {
        return Err(format!("conditions.{key}: at most {max_items} entries"));
    }
    items
        .iter()
        .enumerate()
        .map(|(i, item)| match item {
            Value::String(s) if !s.trim().is_empty() && s.len() <= 1024 => Ok(s.trim().to_owned()),
            _ => Err(format!(
                "conditions.{key}[{i}]: must be a non-empty string of at most 1024 bytes"
            )),
        })
        .collect()
}

/// A host path made absolute and lexical, as the host normalises mount sources.
fn lexical(path: &str) -> String {
    let mut parts: Vec<&str> = vec![];
    for part in path.split('/') {
        match part {
            "" | "." => {}
            ".." => {
                parts.pop();
            }
            part => parts.push(part),
        }
    }
    format!("/{}", parts.join("/"))
}

/// Whether mounting `path` exposes `sensitive`: the same path, one inside it, or one that
/// contains it; `/` itself only when mounted whole.
fn exposes(path: &str, sensitive: &str) -> bool {
    let within = |inner: &str, outer: &str| {
        inner == outer
            || (outer != "/"
                && inner.len() > outer.len()
                && inner.starts_with(outer)
                && inner.as_bytes()[outer.len()] == b'/')
    };
    within(path, sensitive) || within(sensitive, path) || path == "/"
}

fn read(policy_type: &str, conditions: &str) -> Result<Rule, String> {
    Ok(match policy_type {
        "no_root_containers" => {
            let map = fields(conditions, &["allow_named_users"])?;
            Rule::NoRoot {
                allow_named_users: flag(&map, "allow_named_users")?,
            }
        }
        "no_privileged" => {
            let map = fields(
                conditions,
                &[
                    "denied_capabilities",
                    "allow_devices",
                    "allow_joining_containers",
                ],
            )?;
            let mut denied = strings(&map, "denied_capabilities", DANGEROUS_CAPABILITIES, 64)?;
            for (i, cap) in denied.iter_mut().enumerate() {
                let upper = cap.to_ascii_uppercase();
                let bare = upper.strip_prefix("CAP_").unwrap_or(&upper).to_owned();
                if bare.is_empty() || !bare.bytes().all(|b| b.is_ascii_uppercase() || b == b'_') {
                    return Err(format!(
                        "conditions.denied_capabilities[{i}]: not a capability name"
                    ));
                }
                *cap = bare;
            }
            Rule::NoPrivileged {
                denied_capabilities: denied,
                allow_devices: flag(&map, "allow_devices")?,
                allow_joining_containers: flag(&map, "allow_joining_containers")?,
            }
        }
        "no_sensitive_mounts" => {
            let map = fields(conditions, &["paths", "allow_volumes_from"])?;
            let mut paths = strings(&map, "paths", SENSITIVE_PATHS, 128)?;
            for (i, path) in paths.iter_mut().enumerate() {
                if !path.starts_with('/') {
                    return Err(format!("conditions.paths[{i}]: must be an absolute path"));
                }
                *path = lexical(path);
            }
            Rule::NoSensitiveMounts {
                paths,
                allow_volumes_from: flag(&map, "allow_volumes_from")?,
            }
        }
        "require_restart_policy" => {
            let map = fields(conditions, &["allowed"])?;
            let allowed = strings(&map, "allowed", RESTART_POLICIES, 3)?;
            if allowed.is_empty() {
                return Err("conditions.allowed: at least one restart policy".into());
            }
            if let Some((i, _)) = allowed
                .iter()
                .enumerate()
                .find(|(_, p)| !RESTART_POLICIES.contains(&p.as_str()))
            {
                return Err(format!(
                    "conditions.allowed[{i}]: one of always, unless-stopped, on-failure"
                ));
            }
            Rule::RequireRestartPolicy { allowed }
        }
        "require_healthcheck" => {
            fields(conditions, &[])?;
            Rule::RequireHealthcheck
        }
        "require_ssl" => {
            let map = fields(conditions, &["require_redirect", "include_restricted"])?;
            Rule::RequireSsl {
                require_redirect: flag(&map, "require_redirect")?,
                include_restricted: flag(&map, "include_restricted")?,
            }
        }
        "no_exec_production" => {
            let map = fields(conditions, &["label", "values"])?;
            let label = match map.get("label") {
                None | Some(Value::Null) => "env".to_owned(),
                Some(Value::String(s)) if !s.trim().is_empty() && s.len() <= 128 => {
                    s.trim().to_owned()
                }
                Some(_) => {
                    return Err(
                        "conditions.label: must be a non-empty string of at most 128 bytes".into(),
                    );
                }
            };
            let values = strings(&map, "values", &["production"], 64)?;
            if values.is_empty() {
                return Err("conditions.values: at least one value".into());
            }
            Rule::NoExecProduction { label, values }
        }
        "max_container_age" => {
            let map = fields(conditions, &["max_age_days"])?;
            let days = match map.get("max_age_days") {
                None | Some(Value::Null) => 30,
                Some(Value::Number(n)) => match n.as_i64() {
                    Some(d) if (1..=3650).contains(&d) => d,
                    _ => {
                        return Err(
                            "conditions.max_age_days: a whole number of days from 1 to 3650".into(),
                        );
                    }
                },
                Some(_) => {
                    return Err(
                        "conditions.max_age_days: a whole number of days from 1 to 3650".into(),
                    );
                }
            };
            Rule::MaxContainerAge { max_age_days: days }
        }
        other => {
            return Err(format!(
                "policy_type: {:?} is not a template of this engine",
                other.chars().take(64).collect::<String>()
            ));
        }
    })
}

/// Cuts `text` to at most `max` bytes on a character boundary.
fn cut(text: &mut String, max: usize) {
    if text.len() > max {
        let mut at = max - 3;
        while !text.is_char_boundary(at) {
            at -= 1;
        }
        text.truncate(at);
        text.push('…');
    }
}

/// The actions a container's configuration is judged on: what makes or runs it.
fn runs_container(action: Action) -> bool {
    matches!(
        action,
        Action::ContainerCreate
            | Action::ContainerStart
            | Action::ContainerRestart
            | Action::ContainerRunning
    )
}

fn deploys_proxy(action: Action) -> bool {
    matches!(
        action,
        Action::ProxyCreate | Action::ProxyUpdate | Action::ProxyRollback | Action::ProxyReapply
    )
}

fn container_reasons(rule: &Rule, c: &Container, now_ms: i64) -> Vec<String> {
    let mut reasons = Vec::new();
    match rule {
        Rule::NoRoot { allow_named_users } => {
            let uid = c.user.split(':').next().unwrap_or("").trim();
            if c.runs_as_root {
                reasons.push(if c.user.is_empty() {
                    "runs as root (no user set: the image's default, root)".to_owned()
                } else {
                    format!("runs as root (user {:?})", c.user)
                });
            } else if !allow_named_users && !uid.bytes().all(|b| b.is_ascii_digit()) {
                reasons.push(format!(
                    "runs as user {uid:?}, a name whose uid only the image knows (give a numeric uid)"
                ));
            }
        }
        Rule::NoPrivileged {
            denied_capabilities,
            allow_devices,
            allow_joining_containers,
        } => {
            if c.privileged {
                reasons.push("runs privileged".into());
            }
            if c.all_capabilities && !c.privileged {
                reasons.push("adds every capability (ALL)".into());
            }
            for cap in &c.capabilities {
                if denied_capabilities.contains(cap) {
                    reasons.push(format!("adds capability {cap}"));
                }
            }
            // The host's cgroup namespace is Docker's default on cgroup v1 (its cgroupfs is
            // read-only in the container): not a privilege of its own.
            for ns in c.host_namespaces.iter().filter(|ns| *ns != "cgroup") {
                reasons.push(format!("shares the host's {ns} namespace"));
            }
            if !allow_joining_containers {
                for other in &c.joins_containers {
                    reasons.push(format!(
                        "joins the namespaces of container {other} (which may share the host's)"
                    ));
                }
            }
            if c.seccomp_unconfined {
                reasons.push("runs without a seccomp profile (seccomp=unconfined)".into());
            }
            if c.apparmor_unconfined {
                reasons.push("runs without an AppArmor profile (apparmor=unconfined)".into());
            }
            if c.selinux_disabled {
                reasons.push("runs without SELinux labelling (label=disable)".into());
            }
            if c.system_paths_unconfined {
                reasons.push("unmasks the kernel's system paths (systempaths=unconfined)".into());
            }
            if !allow_devices {
                for m in c.mounts.iter().filter(|m| m.kind == MountKind::Device) {
                    reasons.push(format!("gets host device {}", m.source));
                }
            }
        }
        Rule::NoSensitiveMounts {
            paths,
            allow_volumes_from,
        } => {
            for m in &c.mounts {
                match m.kind {
                    MountKind::Bind | MountKind::Device => {
                        if let Some(sensitive) = paths.iter().find(|p| exposes(&m.source, p)) {
                            reasons.push(if &m.source == sensitive {
                                format!("mounts {} from the host", m.source)
                            } else {
                                format!("mounts {} from the host, exposing {sensitive}", m.source)
                            });
                        }
                    }
                    MountKind::VolumesFrom if !allow_volumes_from => {
                        reasons.push(format!(
                            "takes every mount of container {} (volumes-from)",
                            m.source
                        ));
                    }
                    _ => {}
                }
            }
        }
        Rule::RequireRestartPolicy { allowed } => {
            if !allowed.contains(&c.restart_policy) {
                reasons.push(format!(
                    "restart policy {:?} is not one of {}",
                    c.restart_policy,
                    allowed.join(", ")
                ));
            }
        }
        Rule::RequireHealthcheck => {
            if !c.healthcheck {
                reasons.push("has no healthcheck".into());
            }
        }
        Rule::MaxContainerAge { max_age_days } => {
            if let Some(created) = c.created_at_unix_ms {
                let age_days = (now_ms - created) / 86_400_000;
                if age_days > *max_age_days {
                    reasons.push(format!(
                        "was created {age_days} days ago, more than {max_age_days}"
                    ));
                }
            }
        }
        Rule::RequireSsl { .. } | Rule::NoExecProduction { .. } => {}
    }
    reasons
}

fn reasons(rule: &Rule, request: &Request) -> Vec<String> {
    match rule {
        Rule::RequireSsl {
            require_redirect,
            include_restricted,
        } => {
            if !deploys_proxy(request.action) {
                return Vec::new();
            }
            let mut reasons = Vec::new();
            for host in &request.proxy_hosts {
                if host.access_restricted && !include_restricted {
                    continue;
                }
                let name = host
                    .domains
                    .first()
                    .cloned()
                    .unwrap_or_else(|| host.id.clone());
                if !host.tls {
                    reasons.push(format!("proxy host {name} serves plain HTTP only"));
                } else if *require_redirect && !host.redirect_http {
                    reasons.push(format!("proxy host {name} does not redirect HTTP to HTTPS"));
                }
            }
            reasons
        }
        Rule::NoExecProduction { label, values } => {
            if request.action != Action::ContainerExec {
                return Vec::new();
            }
            request
                .node_labels
                .iter()
                .filter(|(k, v)| k == label && values.iter().any(|x| x.eq_ignore_ascii_case(v)))
                .map(|(k, v)| format!("node {} is labelled {k}={v}", request.node_name))
                .take(1)
                .collect()
        }
        _ => match &request.container {
            Some(c) if runs_container(request.action) => {
                container_reasons(rule, c, request.now_unix_ms)
            }
            _ => Vec::new(),
        },
    }
}

impl PolicyEngine for Templates {
    type PolicySet = Prepared;

    fn policy_types() -> Vec<PolicyType> {
        TEMPLATES
            .iter()
            .map(|(id, title, description, schema)| PolicyType {
                id: (*id).to_owned(),
                title: (*title).to_owned(),
                description: (*description).to_owned(),
                conditions_schema: (*schema).to_owned(),
            })
            .collect()
    }

    fn check(policy: Policy) -> Result<(), PluginError> {
        read(&policy.policy_type, &policy.conditions)
            .map(|_| ())
            .map_err(PluginError::InvalidSettings)
    }

    fn prepare(policies: Vec<Policy>) -> Result<PolicySet, PluginError> {
        let rules = policies
            .into_iter()
            .map(|policy| {
                read(&policy.policy_type, &policy.conditions)
                    .map(|rule| (policy.id.clone(), rule))
                    .map_err(|e| PluginError::InvalidSettings(format!("policy {}: {e}", policy.id)))
            })
            .collect::<Result<_, _>>()?;
        Ok(PolicySet::new(Prepared { rules }))
    }
}

/// Policies read once: each one's id and rule.
struct Prepared {
    rules: Vec<(String, Rule)>,
}

impl GuestPolicySet for Prepared {
    fn evaluate(&self, request: Request) -> Result<Vec<Finding>, PluginError> {
        let mut findings = Vec::new();
        for (id, rule) in &self.rules {
            let mut reasons = reasons(rule, &request);
            if !reasons.is_empty() {
                reasons.truncate(32);
                for r in &mut reasons {
                    cut(r, 1000);
                }
                findings.push(Finding {
                    policy_id: id.clone(),
                    reasons,
                });
            }
        }
        Ok(findings)
    }
}

infrapilot_plugin_sdk::export_policy_engine!(Templates);
