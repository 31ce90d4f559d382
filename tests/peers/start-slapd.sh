#!/usr/bin/env bash
# Throw-away OpenLDAP (slapd 2.5, Debian 12) on loopback with StartTLS, LDAPS, memberOf, for the
# directory sign-in tests (host/api/tests/sso_ldap.rs). People: alice (groups admins, devs), bob
# (devs); the service account cn=reader,ou=services (password readerpw). It keeps RFC 4513's
# unauthenticated-bind trap on (allow bind_anon_dn), so the host's refusal of empty passwords is
# tested against a directory that would accept them. Prints the work dir; $D/env has the ports.
# Stop: kill $(cat $D/slapd.pid).
set -euo pipefail
mkdir -p "${PEERS_TMP:-/tmp}"
D=$(mktemp -d "${PEERS_TMP:-/tmp}/peer-ldap.XXXXXX")
freeport() { python3 -c 'import socket;s=socket.socket();s.bind(("127.0.0.1",0));print(s.getsockname()[1])'; }
PORT=$(freeport); SPORT=$(freeport)
BASE=dc=example,dc=test
mkdir -p "$D/db"

# A test CA ($D/ca.pem) and the server's certificate for 127.0.0.1 and localhost signed by it
# (rustls, like browsers, refuses a CA certificate as a server's own).
openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj /CN=infrapilot-test-ldap-ca \
  -keyout "$D/ca-key.pem" -out "$D/ca.pem" 2>/dev/null
openssl req -newkey rsa:2048 -nodes -subj /CN=127.0.0.1 \
  -keyout "$D/key.pem" -out "$D/server.csr" 2>/dev/null
printf 'subjectAltName=IP:127.0.0.1,DNS:localhost\nbasicConstraints=critical,CA:FALSE\nextendedKeyUsage=serverAuth\n' >"$D/server.ext"
openssl x509 -req -in "$D/server.csr" -CA "$D/ca.pem" -CAkey "$D/ca-key.pem" -CAcreateserial \
  -days 2 -extfile "$D/server.ext" -out "$D/cert.pem" 2>/dev/null

cat > "$D/slapd.conf" <<CONF
include /etc/ldap/schema/core.schema
include /etc/ldap/schema/cosine.schema
include /etc/ldap/schema/inetorgperson.schema
include /etc/ldap/schema/nis.schema
modulepath /usr/lib/ldap
moduleload back_mdb
moduleload memberof
pidfile  $D/slapd.pid
argsfile $D/slapd.args
TLSCertificateFile    $D/cert.pem
TLSCertificateKeyFile $D/key.pem
# RFC 4513 5.1.2 trap: a simple bind with a DN and an EMPTY password is an
# "unauthenticated bind" and succeeds as anonymous. slapd refuses it unless:
allow bind_anon_dn

database mdb
maxsize  104857600
suffix   "$BASE"
rootdn   "cn=admin,$BASE"
rootpw   adminpw
directory $D/db
overlay memberof
memberof-group-oc groupOfNames
memberof-member-ad member
memberof-memberof-ad memberOf
memberof-refint TRUE
access to attrs=userPassword by self write by anonymous auth by * none
access to * by users read by anonymous auth
CONF

# base + users offline (slapadd); groups later via ldapadd so memberOf is computed
cat > "$D/base.ldif" <<LDIF
dn: $BASE
objectClass: dcObject
objectClass: organization
o: Example Test
dc: example

dn: ou=people,$BASE
objectClass: organizationalUnit
ou: people

dn: ou=groups,$BASE
objectClass: organizationalUnit
ou: groups

dn: ou=services,$BASE
objectClass: organizationalUnit
ou: services

dn: cn=reader,ou=services,$BASE
objectClass: organizationalRole
objectClass: simpleSecurityObject
cn: reader
userPassword: $(slappasswd -s readerpw)

dn: uid=alice,ou=people,$BASE
objectClass: inetOrgPerson
uid: alice
cn: Alice Example
sn: Example
mail: alice@example.test
userPassword: $(slappasswd -s alicepw)

dn: uid=bob,ou=people,$BASE
objectClass: inetOrgPerson
uid: bob
cn: Bob Example
sn: Example
mail: bob@example.test
userPassword: $(slappasswd -s bobpw)
LDIF
slapadd -q -f "$D/slapd.conf" -l "$D/base.ldif"

cat > "$D/groups.ldif" <<LDIF
dn: cn=admins,ou=groups,$BASE
objectClass: groupOfNames
cn: admins
member: uid=alice,ou=people,$BASE

dn: cn=devs,ou=groups,$BASE
objectClass: groupOfNames
cn: devs
member: uid=alice,ou=people,$BASE
member: uid=bob,ou=people,$BASE
LDIF

t0=$EPOCHREALTIME
slapd -f "$D/slapd.conf" -h "ldap://127.0.0.1:$PORT/ ldaps://127.0.0.1:$SPORT/"   # forks; pid in $D/slapd.pid
until ldapwhoami -x -H "ldap://127.0.0.1:$PORT" >/dev/null 2>&1; do sleep 0.05; done
echo "slapd ready after $(awk "BEGIN{print $EPOCHREALTIME-$t0}")s" >&2
ldapadd -x -H "ldap://127.0.0.1:$PORT" -D "cn=admin,$BASE" -w adminpw -f "$D/groups.ldif" >/dev/null

cat > "$D/env" <<ENV
export LDAP_DIR=$D LDAP_PORT=$PORT LDAPS_PORT=$SPORT LDAP_BASE=$BASE
export LDAPTLS_CACERT=$D/ca.pem   # lets ldap-utils verify the self-signed cert
ENV
echo "$D"
