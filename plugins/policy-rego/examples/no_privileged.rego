# The `no_privileged` template (default conditions), written in Rego.
package infrapilot.examples.no_privileged

judged := {"container.create", "container.start", "container.restart", "container.running"}

dangerous := {
	"SYS_ADMIN", "SYS_MODULE", "SYS_RAWIO", "SYS_PTRACE", "SYS_BOOT",
	"DAC_READ_SEARCH", "BPF", "PERFMON", "MAC_ADMIN", "MAC_OVERRIDE",
	"SYS_TIME", "AUDIT_CONTROL", "SYSLOG",
}

c := input.container

deny contains "runs privileged" if {
	input.action in judged
	c.privileged
}

deny contains "adds every capability (ALL)" if {
	input.action in judged
	c.all_capabilities
}

deny contains msg if {
	input.action in judged
	some cap in c.capabilities
	cap in dangerous
	msg := sprintf("adds capability %s", [cap])
}

deny contains msg if {
	input.action in judged
	some ns in c.host_namespaces
	ns != "cgroup" # Docker's default on cgroup v1
	msg := sprintf("shares the host's %s namespace", [ns])
}

deny contains msg if {
	input.action in judged
	some other in c.joins_containers
	msg := sprintf("joins the namespaces of container %s", [other])
}

deny contains "runs without a seccomp profile" if {
	input.action in judged
	c.seccomp_unconfined
}

deny contains "runs without an AppArmor profile" if {
	input.action in judged
	c.apparmor_unconfined
}

deny contains "runs without SELinux labelling" if {
	input.action in judged
	c.selinux_disabled
}

deny contains "unmasks the kernel's system paths" if {
	input.action in judged
	c.system_paths_unconfined
}

deny contains msg if {
	input.action in judged
	some m in c.mounts
	m.kind == "device"
	msg := sprintf("gets host device %s", [m.source])
}
