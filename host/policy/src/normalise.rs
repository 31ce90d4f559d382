//! A container's Docker configuration in one canonical form.
//!
//! Input: the body of Docker's `POST /containers/create` (configuration at the top, `HostConfig`
//! inside) or the answer of `GET /containers/{id}/json` (`Config` and `HostConfig`). Docker (Go's
//! `encoding/json`) matches keys ignoring ASCII case — and folds `ſ` to `s` and the Kelvin sign to
//! `k` —, so keys are matched the same way here; two keys that fold alike are refused (which one
//! Docker takes depends on their order), as are values of the wrong type. Every way Docker has of
//! mounting something (`Binds`, `Mounts`, `VolumesFrom`, `Tmpfs`, `Devices`) becomes one list of
//! [`HostMount`]s with lexically normalised host paths; `User` forms that mean uid 0 mean root;
//! `CAP_` prefixes and case go; host namespaces, unconfined seccomp/AppArmor/SELinux/system paths
//! and privileged mode are flags. Anything this cannot read is an error: a caller denies.

use std::collections::{BTreeMap, BTreeSet};

use serde_json::{Map, Value};

/// Why a configuration cannot be read; the action it belongs to is denied.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NormaliseError {
    #[error("{0}: given more than once (keys that differ only in case)")]
    Ambiguous(String),
    #[error("{field}: expected {expected}")]
    Type {
        field: String,
        expected: &'static str,
    },
    #[error("{field}: {message}")]
    Invalid { field: String, message: String },
}

/// How something reaches into the container.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum MountKind {
    /// A host path (`Binds` with an absolute source, `Mounts` of type `bind`).
    Bind,
    /// A named volume.
    Volume,
    /// Memory (`Tmpfs`, `Mounts` of type `tmpfs`): nothing of the host.
    Tmpfs,
    /// A host device (`Devices`).
    Device,
    /// Every mount of another container (`VolumesFrom`): what it holds is not visible here.
    VolumesFrom,
}

#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, serde::Serialize)]
pub struct HostMount {
    pub kind: MountKind,
    /// A bind's or device's host path (normalised: absolute, no `.`, `..` or doubled `/`), a
    /// volume's name, another container's name; empty for tmpfs.
    pub source: String,
    /// Where it appears in the container (empty for `VolumesFrom`).
    pub target: String,
    pub read_only: bool,
}

/// What a container will be, as policies judge it.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct EffectiveContainer {
    /// The container's name without its leading `/` (an inspect answer's `Name`; empty for a
    /// create body, whose name travels apart).
    pub name: String,
    /// When Docker created it (an inspect answer's `Created`).
    pub created_at_unix_ms: Option<i64>,
    pub image: String,
    /// `User` as given (`""`: the image's user).
    pub user: String,
    /// uid 0 (`""` counts: an image without `USER` runs as root, and the host cannot see the
    /// image's setting).
    pub runs_as_root: bool,
    pub privileged: bool,
    /// Added capabilities, upper case without `CAP_` (`ALL` for all).
    pub capabilities: BTreeSet<String>,
    /// `ALL` among the added capabilities, or privileged.
    pub all_capabilities: bool,
    /// The host's namespaces the container joins: `pid`, `ipc`, `network`, `uts`, `userns`,
    /// `cgroup`.
    pub host_namespaces: BTreeSet<String>,
    /// Other containers whose namespaces it joins (`container:<name>` modes).
    pub joins_containers: BTreeSet<String>,
    pub seccomp_unconfined: bool,
    pub apparmor_unconfined: bool,
    /// `label=disable`: no SELinux confinement.
    pub selinux_disabled: bool,
    /// `systempaths=unconfined`: `/proc` and `/sys` paths unmasked.
    pub system_paths_unconfined: bool,
    /// Every mount, sorted.
    pub mounts: Vec<HostMount>,
    /// The restart policy's name; none for `no` or when not set.
    pub restart_policy: Option<String>,
    /// A healthcheck is defined here (not `NONE`; an image's own is not visible to the host).
    pub healthcheck: bool,
    pub labels: BTreeMap<String, String>,
}

/// Go's `encoding/json` key folding: ASCII case, `ſ` as `s`, the Kelvin sign as `k`.
fn fold(key: &str) -> String {
    key.chars()
        .map(|c| match c {
            '\u{17f}' => 's',
            '\u{212a}' => 'k',
            c => c.to_ascii_lowercase(),
        })
        .collect()
}

/// The value of `name` in `object`, matched as Docker matches it.
fn field<'a>(
    object: &'a Map<String, Value>,
    path: &str,
    name: &str,
) -> Result<Option<&'a Value>, NormaliseError> {
    let wanted = fold(name);
    let mut found = None;
    for (key, value) in object {
        if fold(key) == wanted {
            if found.is_some() {
                return Err(NormaliseError::Ambiguous(join(path, name)));
            }
            found = Some(value);
        }
    }
    Ok(found.filter(|v| !v.is_null()))
}

fn join(path: &str, name: &str) -> String {
    if path.is_empty() {
        name.to_owned()
    } else {
        format!("{path}.{name}")
    }
}

fn wrong(path: &str, name: &str, expected: &'static str) -> NormaliseError {
    NormaliseError::Type {
        field: join(path, name),
        expected,
    }
}

fn string(object: &Map<String, Value>, path: &str, name: &str) -> Result<String, NormaliseError> {
    match field(object, path, name)? {
        None => Ok(String::new()),
        Some(Value::String(s)) => Ok(s.clone()),
        Some(_) => Err(wrong(path, name, "a string")),
    }
}

fn boolean(object: &Map<String, Value>, path: &str, name: &str) -> Result<bool, NormaliseError> {
    match field(object, path, name)? {
        None => Ok(false),
        Some(Value::Bool(b)) => Ok(*b),
        Some(_) => Err(wrong(path, name, "true or false")),
    }
}

fn object<'a>(
    parent: &'a Map<String, Value>,
    path: &str,
    name: &str,
) -> Result<Option<&'a Map<String, Value>>, NormaliseError> {
    match field(parent, path, name)? {
        None => Ok(None),
        Some(Value::Object(o)) => Ok(Some(o)),
        Some(_) => Err(wrong(path, name, "an object")),
    }
}

fn strings(
    object: &Map<String, Value>,
    path: &str,
    name: &str,
) -> Result<Vec<String>, NormaliseError> {
    match field(object, path, name)? {
        None => Ok(vec![]),
        Some(Value::Array(items)) => items
            .iter()
            .map(|v| match v {
                Value::String(s) => Ok(s.clone()),
                _ => Err(wrong(path, name, "a list of strings")),
            })
            .collect(),
        Some(_) => Err(wrong(path, name, "a list of strings")),
    }
}

fn objects<'a>(
    object: &'a Map<String, Value>,
    path: &str,
    name: &str,
) -> Result<Vec<&'a Map<String, Value>>, NormaliseError> {
    match field(object, path, name)? {
        None => Ok(vec![]),
        Some(Value::Array(items)) => items
            .iter()
            .map(|v| {
                v.as_object()
                    .ok_or_else(|| wrong(path, name, "a list of objects"))
            })
            .collect(),
        Some(_) => Err(wrong(path, name, "a list of objects")),
    }
}

/// A host path made absolute and lexical: no `.`, no `..` (above `/` stays `/`), no doubled or
/// trailing `/`. (Symbolic links on the node are not seen: policies list the usual aliases,
/// such as `/run` and `/var/run`.)
pub fn normalise_host_path(path: &str) -> String {
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

/// Whether mounting `path` (normalised) exposes `sensitive`: the same path, one inside it, or
/// one that contains it (`/var` holds `/var/lib/docker`); `/` itself only when mounted whole.
pub fn exposes(path: &str, sensitive: &str) -> bool {
    let within = |inner: &str, outer: &str| {
        inner == outer || (outer != "/" && inner.starts_with(&format!("{outer}/")))
    };
    within(path, sensitive) || within(sensitive, path) || path == "/"
}

/// uid 0: empty (the image's user, root unless the image says otherwise), `root`, `0`, `00`, with
/// any group.
fn is_root(user: &str) -> bool {
    let uid = user.split(':').next().unwrap_or("").trim();
    // Go's strconv.Atoi (runc's reading of a numeric user) takes a sign: "+0" is uid 0.
    let uid = uid.strip_prefix(['+', '-']).unwrap_or(uid);
    uid.is_empty()
        || uid == "root"
        || (uid.bytes().all(|b| b.is_ascii_digit()) && uid.trim_start_matches('0').is_empty())
}

/// `CAP_SYS_ADMIN`, `cap_sys_admin`, `sys_admin` → `SYS_ADMIN`.
fn capability(name: &str) -> String {
    let upper = name.trim().to_ascii_uppercase();
    upper.strip_prefix("CAP_").unwrap_or(&upper).to_owned()
}

/// The host path a `Mounts` volume entry binds through the local driver's `device` option.
fn volume_device(m: &Map<String, Value>) -> Result<Option<String>, NormaliseError> {
    let path = "HostConfig.Mounts.VolumeOptions";
    let Some(options) = object(m, "HostConfig.Mounts", "VolumeOptions")? else {
        return Ok(None);
    };
    let Some(driver) = object(options, path, "DriverConfig")? else {
        return Ok(None);
    };
    let Some(opts) = object(driver, &format!("{path}.DriverConfig"), "Options")? else {
        return Ok(None);
    };
    let device = string(opts, &format!("{path}.DriverConfig.Options"), "device")?;
    Ok((!device.is_empty()).then_some(device))
}

/// The canonical form of Docker's inspect answer (`GET /containers/{id}/json`): it must carry
/// `Id`, `Config` and `HostConfig` — anything else (an older agent's summary) is refused, so a
/// decision is never made on a configuration read as empty.
pub fn normalise_inspect(body: &Value) -> Result<EffectiveContainer, NormaliseError> {
    let root = body.as_object().ok_or(NormaliseError::Type {
        field: "body".into(),
        expected: "an object",
    })?;
    for name in ["Config", "HostConfig"] {
        if object(root, "", name)?.is_none() {
            return Err(NormaliseError::Invalid {
                field: name.into(),
                message: "not an inspect answer (the node's agent may be older than the host)"
                    .into(),
            });
        }
    }
    if string(root, "", "Id")?.is_empty() {
        return Err(NormaliseError::Invalid {
            field: "Id".into(),
            message: "not an inspect answer".into(),
        });
    }
    normalise(body)
}

/// A `Binds` entry: `source:target[:options]`.
fn bind(entry: &str, field: &str) -> Result<HostMount, NormaliseError> {
    let parts: Vec<&str> = entry.split(':').collect();
    let (source, target, options) = match parts.as_slice() {
        [source, target] => (*source, *target, ""),
        [source, target, options] => (*source, *target, *options),
        _ => {
            return Err(NormaliseError::Invalid {
                field: field.to_owned(),
                message: format!("{entry:?} is not source:target[:options]"),
            });
        }
    };
    let read_only = options.split(',').any(|o| o.trim() == "ro");
    Ok(if source.starts_with('/') {
        HostMount {
            kind: MountKind::Bind,
            source: normalise_host_path(source),
            target: target.to_owned(),
            read_only,
        }
    } else {
        HostMount {
            kind: MountKind::Volume,
            source: source.to_owned(),
            target: target.to_owned(),
            read_only,
        }
    })
}

/// The canonical form of a container's configuration (a create body or an inspect answer).
pub fn normalise(body: &Value) -> Result<EffectiveContainer, NormaliseError> {
    let root = body.as_object().ok_or(NormaliseError::Type {
        field: "body".into(),
        expected: "an object",
    })?;
    // An inspect answer keeps the configuration under `Config`; a create body at the top.
    let (config, config_path) = match object(root, "", "Config")? {
        Some(config) => (config, "Config"),
        None => (root, ""),
    };
    let empty = Map::new();
    let host = object(root, "", "HostConfig")?.unwrap_or(&empty);
    let hp = "HostConfig";

    let created = string(root, "", "Created")?;
    let created_at_unix_ms = if created.is_empty() {
        None
    } else {
        let at = time::OffsetDateTime::parse(
            created.trim(),
            &time::format_description::well_known::Rfc3339,
        )
        .map_err(|e| NormaliseError::Invalid {
            field: "Created".into(),
            message: e.to_string(),
        })?;
        Some((at.unix_timestamp_nanos() / 1_000_000) as i64)
    };
    let mut out = EffectiveContainer {
        name: string(root, "", "Name")?.trim_start_matches('/').to_owned(),
        created_at_unix_ms,
        image: string(config, config_path, "Image")?,
        user: string(config, config_path, "User")?,
        privileged: boolean(host, hp, "Privileged")?,
        ..Default::default()
    };
    out.runs_as_root = is_root(&out.user);

    for cap in strings(host, hp, "CapAdd")? {
        out.capabilities.insert(capability(&cap));
    }
    out.all_capabilities = out.privileged || out.capabilities.contains("ALL");

    for (name, namespace) in [
        ("PidMode", "pid"),
        ("IpcMode", "ipc"),
        ("NetworkMode", "network"),
        ("UTSMode", "uts"),
        ("UsernsMode", "userns"),
        ("CgroupnsMode", "cgroup"),
    ] {
        let mode = string(host, hp, name)?;
        let mode = mode.trim();
        if mode.eq_ignore_ascii_case("host") {
            out.host_namespaces.insert(namespace.to_owned());
        } else if let Some(other) = mode
            .get(..10)
            .filter(|p| p.eq_ignore_ascii_case("container:"))
            .map(|_| &mode[10..])
        {
            out.joins_containers.insert(other.to_owned());
        }
    }

    for option in strings(host, hp, "SecurityOpt")? {
        let (key, value) = option
            .split_once(['=', ':'])
            .unwrap_or((option.as_str(), ""));
        let (key, value) = (
            key.trim().to_ascii_lowercase(),
            value.trim().to_ascii_lowercase(),
        );
        match (key.as_str(), value.as_str()) {
            ("seccomp", "unconfined") => out.seccomp_unconfined = true,
            // An inline profile (Docker accepts JSON here) cannot be judged: as unconfined.
            ("seccomp", v) if v.starts_with('{') => out.seccomp_unconfined = true,
            ("apparmor", "unconfined") => out.apparmor_unconfined = true,
            ("label", "disable") => out.selinux_disabled = true,
            // Another SELinux type (spc_t, unconfined_t …) escapes the container type.
            ("label", v) if v.starts_with("type") => out.selinux_disabled = true,
            // moby reads a bare `disable` as `label=disable`.
            ("disable", "") => out.selinux_disabled = true,
            ("systempaths", "unconfined") => out.system_paths_unconfined = true,
            _ => {}
        }
    }
    // What `--security-opt systempaths=unconfined` becomes in the configuration.
    for name in ["MaskedPaths", "ReadonlyPaths"] {
        if field(host, hp, name)?.is_some_and(|v| v.as_array().is_some_and(Vec::is_empty)) {
            out.system_paths_unconfined = true;
        }
    }
    // The legacy capability list is added like CapAdd.
    for cap in strings(host, hp, "Capabilities")? {
        out.capabilities.insert(capability(&cap));
    }
    out.all_capabilities = out.privileged || out.capabilities.contains("ALL");
    if out.privileged {
        out.seccomp_unconfined = true;
        out.apparmor_unconfined = true;
        out.system_paths_unconfined = true;
    }

    let mut mounts = vec![];
    for entry in strings(host, hp, "Binds")? {
        mounts.push(bind(&entry, "HostConfig.Binds")?);
    }
    for m in objects(host, hp, "Mounts")? {
        let path = "HostConfig.Mounts";
        let kind = string(m, path, "Type")?;
        let source = string(m, path, "Source")?;
        let target = string(m, path, "Target")?;
        let read_only = boolean(m, path, "ReadOnly")?;
        let (kind, source) = match kind.to_ascii_lowercase().as_str() {
            "bind" | "npipe" => (MountKind::Bind, normalise_host_path(&source)),
            // A local volume with `device` is a bind of that host path in disguise.
            "volume" | "" => match volume_device(m)? {
                Some(device) => (MountKind::Bind, normalise_host_path(&device)),
                None => (MountKind::Volume, source),
            },
            "image" | "cluster" => (MountKind::Volume, source),
            "tmpfs" => (MountKind::Tmpfs, String::new()),
            other => {
                return Err(NormaliseError::Invalid {
                    field: format!("{path}.Type"),
                    message: format!("{other:?} is not bind, volume or tmpfs"),
                });
            }
        };
        mounts.push(HostMount {
            kind,
            source,
            target,
            read_only,
        });
    }
    for entry in strings(host, hp, "VolumesFrom")? {
        let name = entry.split(':').next().unwrap_or("").to_owned();
        mounts.push(HostMount {
            kind: MountKind::VolumesFrom,
            read_only: entry.ends_with(":ro"),
            source: name,
            target: String::new(),
        });
    }
    if let Some(tmpfs) = object(host, hp, "Tmpfs")? {
        for target in tmpfs.keys() {
            mounts.push(HostMount {
                kind: MountKind::Tmpfs,
                source: String::new(),
                target: target.clone(),
                read_only: false,
            });
        }
    }
    // Device rules give access to devices by number, whatever is mounted.
    for rule in strings(host, hp, "DeviceCgroupRules")? {
        mounts.push(HostMount {
            kind: MountKind::Device,
            source: format!("/dev (cgroup rule {rule})"),
            target: String::new(),
            read_only: false,
        });
    }
    for d in objects(host, hp, "Devices")? {
        let path = "HostConfig.Devices";
        mounts.push(HostMount {
            kind: MountKind::Device,
            source: normalise_host_path(&string(d, path, "PathOnHost")?),
            target: string(d, path, "PathInContainer")?,
            read_only: false,
        });
    }
    // The agent's report of where binds and devices really lead on the node (through symbolic
    // links): judged as mounted too.
    if let Some(real) = object(root, "", "InfraPilotRealPaths")? {
        let mut also = Vec::new();
        for m in &mounts {
            if !matches!(m.kind, MountKind::Bind | MountKind::Device) {
                continue;
            }
            for (given, target) in real {
                if normalise_host_path(given) == m.source
                    && let Some(target) = target.as_str()
                {
                    also.push(HostMount {
                        kind: m.kind,
                        source: normalise_host_path(target),
                        target: m.target.clone(),
                        read_only: m.read_only,
                    });
                }
            }
        }
        mounts.extend(also);
    }
    // The agent's report of named volumes that bind a host path (`device`): binds of it.
    if let Some(devices) = object(root, "", "InfraPilotVolumeDevices")? {
        let mut also = Vec::new();
        for m in mounts.iter().filter(|m| m.kind == MountKind::Volume) {
            if let Some(device) = devices.get(&m.source).and_then(Value::as_str) {
                also.push(HostMount {
                    kind: MountKind::Bind,
                    source: normalise_host_path(device),
                    target: m.target.clone(),
                    read_only: m.read_only,
                });
            }
        }
        mounts.extend(also);
    }
    mounts.sort();
    mounts.dedup();
    out.mounts = mounts;

    if let Some(policy) = object(host, hp, "RestartPolicy")? {
        let name = string(policy, "HostConfig.RestartPolicy", "Name")?;
        let name = name.trim().to_ascii_lowercase();
        if !name.is_empty() && name != "no" {
            out.restart_policy = Some(name);
        }
    }
    if let Some(check) = object(config, config_path, "Healthcheck")? {
        let test = strings(check, "Healthcheck", "Test")?;
        out.healthcheck = test
            .first()
            .is_some_and(|first| !first.eq_ignore_ascii_case("NONE"));
    }
    if let Some(labels) = object(config, config_path, "Labels")? {
        for (k, v) in labels {
            let v = v.as_str().ok_or_else(|| wrong("Labels", k, "a string"))?;
            out.labels.insert(k.clone(), v.to_owned());
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn n(body: Value) -> EffectiveContainer {
        normalise(&body).unwrap()
    }

    #[test]
    fn a_bind_through_a_link_is_judged_where_it_leads() {
        let c = n(
            json!({"Id": "abc", "Config": {}, "HostConfig": {"Binds": ["/srv/./link:/x"]},
            "InfraPilotRealPaths": {"/srv/./link": "/etc"}}),
        );
        let sources: Vec<&str> = c.mounts.iter().map(|m| m.source.as_str()).collect();
        assert_eq!(sources, ["/etc", "/srv/link"]);
        let v = n(
            json!({"Id": "abc", "Config": {}, "HostConfig": {"Binds": ["rootfs:/x"]},
            "InfraPilotVolumeDevices": {"rootfs": "/"}}),
        );
        assert!(
            v.mounts
                .iter()
                .any(|m| m.kind == MountKind::Bind && m.source == "/"),
            "{v:?}"
        );
        assert!(normalise_inspect(&json!({"Config": {}, "HostConfig": {}})).is_err());
        assert!(normalise_inspect(&json!({"name": "x", "user": "root", "mounts": []})).is_err());
    }

    #[test]
    fn every_spelling_of_root_is_root() {
        for user in [
            "",
            "0",
            "00",
            "root",
            "0:0",
            "root:root",
            "0:1000",
            "root:staff",
            " 0 ",
            "+0",
            "-0",
            "+00:0",
        ] {
            assert!(n(json!({"User": user})).runs_as_root, "{user:?}");
        }
        assert!(
            n(json!({})).runs_as_root,
            "no User: the image's, root unless it says"
        );
        for user in ["1000", "1000:0", "nobody", "10", "rootless", "ROOT"] {
            assert!(!n(json!({"User": user})).runs_as_root, "{user:?}");
        }
    }

    #[test]
    fn keys_match_as_docker_matches_them() {
        for body in [
            json!({"HostConfig": {"Privileged": true}}),
            json!({"hostconfig": {"privileged": true}}),
            json!({"HOSTCONFIG": {"PRIVILEGED": true}}),
            json!({"HostConfig": {"Privileged": true, "Binds": null}}),
            // Go folds ſ (U+017F) to s and the Kelvin sign (U+212A) to k.
            json!({"hoſtConfig": {"Privileged": true}}),
            json!({"HostConfig": {"Privileged": true}, "Labels": {}}),
        ] {
            assert!(n(body.clone()).privileged, "{body}");
        }
        assert!(
            n(json!({"HostConfig": {"CapAdd": ["SYS_ADMIN"]}}))
                .capabilities
                .contains("SYS_ADMIN")
        );
        assert!(
            n(json!({"Config": {"User": "1"}, "HostConfig": {"CapAdd": ["NET_ADMIN"]}}))
                .capabilities
                .contains("NET_ADMIN")
        );
        assert!(
            n(json!({"\u{212a}apAdd": 1, "HostConfig": {"\u{212a}": 1}}))
                .capabilities
                .is_empty(),
            "unknown keys, folded or not, are ignored as Docker ignores them"
        );
    }

    #[test]
    fn keys_that_fold_alike_or_values_of_the_wrong_type_are_refused() {
        assert_eq!(
            normalise(&json!({"HostConfig": {"Privileged": false, "privileged": true}})),
            Err(NormaliseError::Ambiguous("HostConfig.Privileged".into()))
        );
        assert!(matches!(
            normalise(&json!({"HostConfig": {}, "hostConfig": {"Privileged": true}})),
            Err(NormaliseError::Ambiguous(_))
        ));
        for body in [
            json!({"HostConfig": {"Privileged": "true"}}),
            json!({"HostConfig": {"Privileged": 1}}),
            json!({"HostConfig": "privileged"}),
            json!({"HostConfig": {"Binds": "/:/host"}}),
            json!({"HostConfig": {"Binds": [1]}}),
            json!({"HostConfig": {"Mounts": [{"Type": "weird", "Source": "x", "Target": "y"}]}}),
            json!({"HostConfig": {"Binds": ["/etc"]}}),
            json!({"User": 0}),
            json!([]),
        ] {
            assert!(normalise(&body).is_err(), "{body}");
        }
    }

    #[test]
    fn every_way_of_mounting_is_one_list_with_normalised_paths() {
        let c = n(json!({"HostConfig": {
            "Binds": ["/var/run/../run/docker.sock:/s", "data:/data:ro", "//etc/./ssl/:/ssl:ro,z"],
            "Mounts": [
                {"Type": "bind", "Source": "/var/lib//docker/", "Target": "/d"},
                {"type": "VOLUME", "source": "cache", "target": "/c", "readonly": true},
                {"Type": "tmpfs", "Target": "/t"}
            ],
            "VolumesFrom": ["other:ro"],
            "Tmpfs": {"/run": "size=1m"},
            "Devices": [{"PathOnHost": "/dev/../dev/sda", "PathInContainer": "/dev/sda"}]
        }}));
        let sources: Vec<(MountKind, &str, bool)> = c
            .mounts
            .iter()
            .map(|m| (m.kind, m.source.as_str(), m.read_only))
            .collect();
        assert_eq!(
            sources,
            [
                (MountKind::Bind, "/etc/ssl", true),
                (MountKind::Bind, "/var/lib/docker", false),
                (MountKind::Bind, "/var/run/docker.sock", false),
                (MountKind::Volume, "cache", true),
                (MountKind::Volume, "data", true),
                (MountKind::Tmpfs, "", false),
                (MountKind::Tmpfs, "", false),
                (MountKind::Device, "/dev/sda", false),
                (MountKind::VolumesFrom, "other", true),
            ]
        );
    }

    #[test]
    fn sensitive_paths_are_exposed_by_parents_children_and_themselves() {
        assert_eq!(normalise_host_path("/../../etc/../"), "/");
        assert_eq!(normalise_host_path("relative/./x"), "/relative/x");
        assert!(exposes("/var", "/var/lib/docker"));
        assert!(exposes("/etc/passwd", "/etc"));
        assert!(exposes("/etc", "/etc"));
        assert!(exposes("/", "/etc"));
        assert!(!exposes("/etcetera", "/etc"));
        assert!(!exposes("/home/app", "/etc"));
        assert!(!exposes("/home/app", "/"), "only / itself exposes /");
    }

    #[test]
    fn capabilities_namespaces_and_confinement_are_flags() {
        let c = n(json!({"HostConfig": {
            "CapAdd": ["cap_sys_admin", " Net_Raw ", "all"],
            "PidMode": "HOST", "IpcMode": "host", "NetworkMode": "host", "UTSMode": "host",
            "UsernsMode": "host", "CgroupnsMode": "host",
            "SecurityOpt": ["seccomp:unconfined", "apparmor=UNCONFINED", "label=disable", "systempaths=unconfined", "no-new-privileges"]
        }}));
        assert_eq!(
            c.capabilities
                .iter()
                .map(String::as_str)
                .collect::<Vec<_>>(),
            ["ALL", "NET_RAW", "SYS_ADMIN"]
        );
        assert!(c.all_capabilities);
        assert_eq!(c.host_namespaces.len(), 6);
        assert!(
            c.seccomp_unconfined
                && c.apparmor_unconfined
                && c.selinux_disabled
                && c.system_paths_unconfined
        );
        let c =
            n(json!({"HostConfig": {"NetworkMode": "container:db", "PidMode": "Container:web"}}));
        assert!(c.host_namespaces.is_empty());
        assert_eq!(
            c.joins_containers.into_iter().collect::<Vec<_>>(),
            ["db", "web"]
        );
        let c = n(json!({"HostConfig": {"Privileged": true}}));
        assert!(c.all_capabilities && c.seccomp_unconfined && c.apparmor_unconfined);
        let c = n(json!({"HostConfig": {"NetworkMode": "bridge"}}));
        assert!(!c.all_capabilities && c.host_namespaces.is_empty() && !c.seccomp_unconfined);
    }

    #[test]
    fn restart_policy_healthcheck_and_labels() {
        let c = n(json!({
            "Image": "nginx:1",
            "Healthcheck": {"Test": ["CMD", "true"]},
            "Labels": {"tier": "web"},
            "HostConfig": {"RestartPolicy": {"Name": "Unless-Stopped"}}
        }));
        assert_eq!(c.restart_policy.as_deref(), Some("unless-stopped"));
        assert!(c.healthcheck);
        assert_eq!(c.labels["tier"], "web");
        let c = n(
            json!({"Healthcheck": {"Test": ["NONE"]}, "HostConfig": {"RestartPolicy": {"Name": "no"}}}),
        );
        assert!(!c.healthcheck);
        assert_eq!(c.restart_policy, None);
        // An inspect answer: the configuration under Config.
        let c = n(json!({"Config": {"Image": "x", "User": "app"}, "HostConfig": {}}));
        assert_eq!((c.image.as_str(), c.runs_as_root), ("x", false));
    }
}
