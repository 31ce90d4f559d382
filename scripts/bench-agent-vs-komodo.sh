#!/usr/bin/env bash
# Idle footprint of the InfraPilot agent and of Komodo's periphery agent, side by side in one run.
# (From ../shared/notes, with the setup code and a Docker socket of choice.)
# Usage: bench-agent-vs-komodo.sh INFRAPILOT_RELEASE_DIR PERIPHERY_BINARY
#   INFRAPILOT_RELEASE_DIR: holds `infrapilot` and `infrapilot-agent` (cargo build --release)
#   PERIPHERY_BINARY: Komodo v2.3.2 `periphery` — a snapshot of moghtech/komodo (commit cc1c5aa),
#     `cargo build --release --locked -p komodo_periphery --bin periphery` (~7 min on 2 cores; needs
#     gcc and libssl-dev).
# Needs a Docker engine: DOCKER_SOCK (default /var/run/docker.sock) for both agents. Prints RSS, threads and CPU ticks over 60 s idle.
set -u
REL=$1; KP=$2
SOCK=${DOCKER_SOCK:-/var/run/docker.sock}
export DOCKER_HOST=unix://$SOCK
S=$(mktemp -d /tmp/agent-vs-komodo.XXXXXX); mkdir -p $S/ip $S/kp/run/keys $S/kp/root
port() { python3 -c 'import socket;s=socket.socket();s.bind(("127.0.0.1",0));print(s.getsockname()[1])'; }
HP=$(port); GP=$(port); KPP=$(port)
INFRAPILOT_LISTEN=127.0.0.1:$HP INFRAPILOT_GRPC_LISTEN=127.0.0.1:$GP INFRAPILOT_GRPC_HOSTNAMES=127.0.0.1 \
  INFRAPILOT_DATA_DIR=$S/ip/data INFRAPILOT_BUILTIN_AGENT=false $REL/infrapilot serve > $S/ip/host.log 2>&1 &
HOST=$!
for _ in $(seq 1 50); do curl -fs 127.0.0.1:$HP/healthz >/dev/null && break; sleep 0.2; done
CODE=$(cat $S/ip/data/setup-code)
curl -s -XPOST 127.0.0.1:$HP/api/v1/setup -H 'content-type: application/json' -d "{\"setup_code\":\"$CODE\",\"email\":\"a@b.test\",\"password\":\"Long-Passw0rd-123\",\"name\":\"A\"}" >/dev/null
T=$(curl -s -XPOST 127.0.0.1:$HP/api/v1/auth/login -H 'content-type: application/json' -d '{"email":"a@b.test","password":"Long-Passw0rd-123"}' | python3 -c 'import sys,json;print(json.load(sys.stdin)["access_token"])')
SEC=$(curl -s -XPOST 127.0.0.1:$HP/api/v1/enrollment-tokens -H "authorization: Bearer $T" -H 'content-type: application/json' -d '{"name":"bench","max_uses":1,"expires_in_hours":1}' | python3 -c 'import sys,json;print(json.load(sys.stdin)["secret"])')
INFRAPILOT_AGENT_TOKEN=$SEC $REL/infrapilot-agent enroll --endpoint http://127.0.0.1:$HP --state-dir $S/ip/agent --name bench-node >/dev/null
$REL/infrapilot-agent run --state-dir $S/ip/agent > $S/ip/agent.log 2>&1 &
IA=$!
# Komodo periphery: inbound server on loopback, a configured core key (its fail-closed setting).
$KP key gen -f json > $S/kp/run/keys/core.json 2>/dev/null
PUB=$(python3 -c "import json;print(json.load(open('$S/kp/run/keys/core.json'))['public_key'])")
cat > $S/kp/run/periphery.config.toml <<CFG
root_directory = "$S/kp/root"
bind_ip = "127.0.0.1"
port = $KPP
ssl_enabled = true
private_key = "file:$S/kp/root/keys/periphery.key"
core_public_keys = ["$PUB"]
allowed_ips = ["127.0.0.1/32"]
stats_polling_rate = "5-sec"
container_stats_polling_rate = "30-sec"
CFG
cd $S/kp
run_kp() { exec env -i PATH=/usr/local/bin:/usr/bin:/bin HOME=$S/kp DOCKER_HOST=unix://$SOCK PERIPHERY_LOGGING_ANSI=false $KP --config-path run/periphery.config.toml; }
run_kp > warm.log 2>&1 & W=$!; sleep 8; kill $W; wait $W 2>/dev/null; sleep 1   # first start makes its keys and certs
run_kp > periphery.log 2>&1 & KPID=$!
cd - >/dev/null
sleep 10
ticks() { awk '{print $14+$15+$16+$17}' /proc/$1/stat; }
a0=$(ticks $IA); k0=$(ticks $KPID); sleep 60; a1=$(ticks $IA); k1=$(ticks $KPID)
ra=$(awk '/VmRSS/{print $2}' /proc/$IA/status); rk=$(awk '/VmRSS/{print $2}' /proc/$KPID/status)
echo "infrapilot-agent  RSS ${ra} kB  threads $(awk '/Threads/{print $2}' /proc/$IA/status)  CPU ticks in 60 s $((a1-a0))"
echo "komodo periphery  RSS ${rk} kB  threads $(awk '/Threads/{print $2}' /proc/$KPID/status)  CPU ticks in 60 s $((k1-k0))"
python3 -c "print('RSS ratio (infrapilot/komodo): %.2f' % ($ra/$rk))"
kill $IA $KPID $HOST; wait 2>/dev/null; rm -rf $S
