#!/usr/bin/env bash
# Throw-away Docker registry (distribution 2.8, Debian 12's docker-registry) on loopback, no auth,
# filesystem storage; prints the work dir, whose `env` file holds REG_PORT and REG_PID. Docker
# talks plain HTTP to loopback registries without any configuration.
set -euo pipefail
mkdir -p "${PEERS_TMP:-/tmp}"
D=$(mktemp -d "${PEERS_TMP:-/tmp}/peer-registry.XXXXXX")
PORT=$(python3 -c 'import socket;s=socket.socket();s.bind(("127.0.0.1",0));print(s.getsockname()[1])')
mkdir -p "$D/data"
cat > "$D/config.yml" <<YML
version: 0.1
log:
  level: warn
storage:
  filesystem:
    rootdirectory: $D/data
  delete:
    enabled: true
  cache:
    blobdescriptor: inmemory
http:
  addr: 127.0.0.1:$PORT
  secret: test-only-secret
  headers:
    X-Content-Type-Options: [nosniff]
YML
docker-registry serve "$D/config.yml" > "$D/registry.log" 2>&1 &
pid=$!
for _ in $(seq 1 200); do
  curl -fsS "http://127.0.0.1:$PORT/v2/" >/dev/null 2>&1 && break
  kill -0 $pid 2>/dev/null || { cat "$D/registry.log" >&2; exit 1; }
  sleep 0.05
done
curl -fsS "http://127.0.0.1:$PORT/v2/" >/dev/null
echo "REG_PORT=$PORT REG_PID=$pid" > "$D/env"
echo "$D"
