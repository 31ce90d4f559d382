# The `no_sensitive_mounts` template (default conditions), written in Rego. Mount sources
# arrive normalised by the host (absolute, no `.` or `..`, no trailing `/`).
package infrapilot.examples.no_sensitive_mounts

judged := {"container.create", "container.start", "container.restart", "container.running"}

sensitive := [
	"/", "/etc", "/var/lib/docker", "/var/run/docker.sock", "/run/docker.sock",
	"/run/containerd", "/var/run/containerd", "/proc", "/sys", "/boot", "/root", "/dev",
	"/var/lib/infrapilot-agent", "/var/lib/infrapilot", "/var/lib/containerd", "/var/lib/kubelet",
	"/usr", "/bin", "/sbin", "/lib", "/lib64", "/var/spool/cron",
]

within(inner, outer) if inner == outer

within(inner, outer) if {
	outer != "/"
	startswith(inner, concat("", [outer, "/"]))
}

exposes(path, s) if within(path, s)

exposes(path, s) if within(s, path)

exposes(path, _) if path == "/"

deny contains msg if {
	input.action in judged
	some m in input.container.mounts
	m.kind in {"bind", "device"}
	some s in sensitive
	exposes(m.source, s)
	msg := sprintf("mounts %s from the host, exposing %s", [m.source, s])
}

deny contains msg if {
	input.action in judged
	some m in input.container.mounts
	m.kind == "volumes_from"
	msg := sprintf("takes every mount of container %s (volumes-from)", [m.source])
}
