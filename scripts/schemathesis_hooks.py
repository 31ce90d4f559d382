"""schemathesis hooks for scripts/schemathesis.sh: a plugin bundle (application/x-tar) is sent as
raw bytes, like application/octet-stream."""
import schemathesis

schemathesis.serializer.alias("application/x-tar", "application/octet-stream")
