#!/bin/sh
# InfraPilot agent installer, served by the host at /install.sh. Typical use (the dashboard shows
# this line with your host and a fresh enrollment token):
#
#   curl -fsSL https://pilot.example.com/install.sh | sudo INFRAPILOT_ENDPOINT='https://pilot.example.com' INFRAPILOT_AGENT_TOKEN='ipe_…' INFRAPILOT_AGENT_SHA256='…' sh
#
# It downloads the agent from the host, checks its SHA-256 against INFRAPILOT_AGENT_SHA256 (the
# value in the one-liner itself, so a tampered download from the same origin is refused; only
# without it is the host's published checksum used, with a warning), installs
# it, writes its configuration, enrolls (the node makes its own key; the token is only sent to the
# host), and installs and starts a systemd unit — or, with --foreground, runs the agent in the
# foreground instead. The token and the endpoint are data: they are passed to the agent as
# environment and arguments, never evaluated as shell code.
#
# Options (after `sh -s --`):
#   --foreground        run the agent here instead of installing a systemd unit
#   --name NAME         this node's name (default: the hostname)
#   --prefix DIR        where the binary goes (default /usr/local/bin)
#   --state-dir DIR     key, certificates and identity (default /var/lib/infrapilot-agent)
#   --config-dir DIR    agent.env (default /etc/infrapilot-agent)
#   --insecure-http     accept a plain http:// endpoint that is not loopback (the token and the
#                       binary cross the network unencrypted; refused without this)
set -eu

endpoint=${INFRAPILOT_ENDPOINT:-}
token=${INFRAPILOT_AGENT_TOKEN:-}
expected=${INFRAPILOT_AGENT_SHA256:-}
insecure_http=no
foreground=no
name=
prefix=/usr/local/bin
state_dir=/var/lib/infrapilot-agent
config_dir=/etc/infrapilot-agent

fail() { echo "install.sh: $*" >&2; exit 1; }

while [ $# -gt 0 ]; do
    case $1 in
        --foreground) foreground=yes ;;
        --insecure-http) insecure_http=yes ;;
        --name) [ $# -ge 2 ] || fail "--name needs a value"; name=$2; shift ;;
        --prefix) [ $# -ge 2 ] || fail "--prefix needs a value"; prefix=$2; shift ;;
        --state-dir) [ $# -ge 2 ] || fail "--state-dir needs a value"; state_dir=$2; shift ;;
        --config-dir) [ $# -ge 2 ] || fail "--config-dir needs a value"; config_dir=$2; shift ;;
        --endpoint) [ $# -ge 2 ] || fail "--endpoint needs a value"; endpoint=$2; shift ;;
        *) fail "unknown option: $1" ;;
    esac
    shift
done

[ -n "$endpoint" ] || fail "set INFRAPILOT_ENDPOINT to the host's URL, e.g. https://pilot.example.com"
[ -n "$token" ] || fail "set INFRAPILOT_AGENT_TOKEN to an enrollment token from the dashboard"
case $endpoint in
    http://*|https://*) ;;
    *) fail "INFRAPILOT_ENDPOINT must start with https:// (or http:// for loopback)" ;;
esac
case $endpoint in
    *[!A-Za-z0-9.:/\[\]_-]*) fail "INFRAPILOT_ENDPOINT contains characters a host URL cannot have" ;;
esac
endpoint=${endpoint%/}
case $endpoint in
    http://127.[0-9]*.[0-9]*.[0-9]*|http://127.[0-9]*.[0-9]*.[0-9]*:[0-9]*|http://localhost|http://localhost:[0-9]*|http://\[::1\]|http://\[::1\]:[0-9]*)
        case $endpoint in http://127.*[!0-9.:]*) fail "INFRAPILOT_ENDPOINT: $endpoint is not a loopback address" ;; esac ;;
    http://*)
        if [ "$insecure_http" = yes ]; then
            echo "install.sh: WARNING: $endpoint is plain http and not loopback: the enrollment token and the agent binary cross the network UNENCRYPTED (--insecure-http)" >&2
        else
            fail "$endpoint is plain http and not loopback: the token and the binary would cross the network unencrypted. Use the host's https URL (INFRAPILOT_PUBLIC_URL), or accept the risk with: sh -s -- --insecure-http"
        fi ;;
esac
case $expected in
    '') ;;
    *[!0-9a-f]*) fail "INFRAPILOT_AGENT_SHA256 must be 64 lowercase hex digits" ;;
esac
[ -z "$expected" ] || [ ${#expected} -eq 64 ] || fail "INFRAPILOT_AGENT_SHA256 must be 64 lowercase hex digits"
[ "$(uname -s)" = Linux ] || fail "the agent runs on Linux"
case $(uname -m) in
    x86_64|amd64) ;;
    *) fail "this host serves an x86_64 agent; $(uname -m) is not supported yet" ;;
esac

fetch() {
    if command -v curl >/dev/null 2>&1; then
        curl -fsSL --proto '=http,https' -o "$2" "$1"
    elif command -v wget >/dev/null 2>&1; then
        wget -q -O "$2" "$1"
    else
        fail "curl or wget is needed"
    fi
}

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT INT TERM
echo "downloading the agent from $endpoint"
fetch "$endpoint/downloads/infrapilot-agent" "$tmp/infrapilot-agent"
if [ -z "$expected" ]; then
    echo "install.sh: WARNING: no INFRAPILOT_AGENT_SHA256 in the command; checking against the host's published checksum (same origin as the binary)" >&2
    fetch "$endpoint/downloads/infrapilot-agent.sha256" "$tmp/infrapilot-agent.sha256"
    expected=$(cut -d ' ' -f 1 "$tmp/infrapilot-agent.sha256")
fi
actual=$(sha256sum "$tmp/infrapilot-agent" | cut -d ' ' -f 1)
[ -n "$expected" ] && [ "$expected" = "$actual" ] || fail "checksum mismatch: expected $expected, got $actual; nothing was installed"
echo "checksum OK ($actual)"

mkdir -p "$prefix" "$config_dir"
install -m 0755 "$tmp/infrapilot-agent" "$prefix/infrapilot-agent"
umask 077
printf 'INFRAPILOT_AGENT_STATE_DIR=%s\n' "$state_dir" > "$config_dir/agent.env"

set -- --endpoint "$endpoint"
[ -z "$name" ] || set -- "$@" --name "$name"
[ "$insecure_http" = no ] || set -- "$@" --insecure-http
INFRAPILOT_AGENT_TOKEN=$token "$prefix/infrapilot-agent" --state-dir "$state_dir" enroll "$@"
unset token INFRAPILOT_AGENT_TOKEN

if [ "$foreground" = yes ]; then
    echo "running the agent in the foreground (Ctrl-C stops it)"
    exec "$prefix/infrapilot-agent" --state-dir "$state_dir" run
fi
command -v systemctl >/dev/null 2>&1 || fail "no systemd here: run again with --foreground, or start '$prefix/infrapilot-agent --state-dir $state_dir run' with your init system"
cat > /etc/systemd/system/infrapilot-agent.service <<UNIT
[Unit]
Description=InfraPilot agent
After=network-online.target docker.service
Wants=network-online.target

[Service]
EnvironmentFile=$config_dir/agent.env
ExecStart=$prefix/infrapilot-agent run
Restart=always
RestartSec=5

[Install]
WantedBy=multi-user.target
UNIT
systemctl daemon-reload
systemctl enable --now infrapilot-agent
echo "the agent is installed and running (systemctl status infrapilot-agent)"
