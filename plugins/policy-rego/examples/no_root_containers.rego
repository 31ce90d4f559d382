# The `no_root_containers` template, written in Rego: no container runs as uid 0.
package infrapilot.examples.no_root_containers

judged := {"container.create", "container.start", "container.restart", "container.running"}

deny contains msg if {
	input.action in judged
	input.container.runs_as_root
	msg := sprintf("%s runs as root (user %q)", [input.container.name, input.container.user])
}
