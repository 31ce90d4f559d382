# The `no_root_containers` template, written in Rego: no container runs as uid 0.
package infrapilot.examples.no_root_containers

judged := {"container.create", "container.start", "container.restart", "container.running"}

deny contains msg if {
	input.action in judged
	input.container.runs_as_root
	msg := sprintf("%s runs as root (user %q)", [input.container.name, input.container.user])
}

# A user name: only the image knows its uid.
deny contains msg if {
	input.action in judged
	not input.container.runs_as_root
	uid := trim_space(split(input.container.user, ":")[0])
	not regex.match(`^[0-9]+$`, uid)
	msg := sprintf("%s runs as user %q, a name", [input.container.name, uid])
}
