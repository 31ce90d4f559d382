#!/usr/bin/env bash
# A throw-away SAML 2.0 identity provider (pysaml2 7.5.5 + Debian's xmlsec1, saml-idp.py) on
# loopback for the SAML sign-in tests (host/api/tests/sso_saml.rs).
#   start-saml-idp.sh SP_ENTITY_ID SP_ACS_URL [more pairs]   prints the work dir; $D/env has IDP_PORT IDP_PID
# IDP_DIR=<dir> IDP_PORT=<port> restart one on the same key and port (the service provider's
# entity id is known only once its provider exists). The virtualenv is $SAML_VENV (default
# ~/.cache/infrapilot/saml-venv), made here when missing. The IdP answers every AuthnRequest at
# once for alice (email alice@example.test, groups admins and devs), Response and Assertion
# signed with RSA-SHA256.
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
VENV=${SAML_VENV:-$HOME/.cache/infrapilot/saml-venv}
if [ ! -x "$VENV/bin/python" ] || ! "$VENV/bin/python" -c 'import saml2' 2>/dev/null; then
    python3 -m venv "$VENV" >&2
    "$VENV/bin/pip" install -q pysaml2==7.5.5 >&2
fi
command -v xmlsec1 >/dev/null || { echo "xmlsec1 is needed (Debian package xmlsec1)" >&2; exit 1; }
D=${IDP_DIR:-$(mktemp -d "${PEERS_TMP:-/tmp}/peer-saml.XXXXXX")}
PORT=${IDP_PORT:-$(python3 -c 'import socket;s=socket.socket();s.bind(("127.0.0.1",0));print(s.getsockname()[1])')}
[ -f "$D/idp.key" ] || openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj /CN=test-idp \
  -keyout "$D/idp.key" -out "$D/idp.crt" 2>/dev/null
"$VENV/bin/python" "$HERE/saml-idp.py" "$D" "$PORT" "$@" > "$D/idp.log" 2>&1 &
pid=$!
until curl -fsS -o /dev/null "http://127.0.0.1:$PORT/metadata" 2>/dev/null; do
  sleep 0.1; kill -0 $pid 2>/dev/null || { cat "$D/idp.log" >&2; exit 1; }
done
echo "export IDP_DIR=$D IDP_PORT=$PORT IDP_PID=$pid" > "$D/env"
echo "$D"
