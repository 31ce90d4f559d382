#!/usr/bin/env python3
"""Claims a fresh host with its setup code, signs in and prints a super-admin API token (for the
schemathesis run in scripts/test.sh). Usage: schemathesis-token.py BASE_URL SETUP_CODE"""
import json
import sys
import urllib.request


def call(base, method, path, body=None, token=None):
    request = urllib.request.Request(base + path, method=method)
    request.add_header("content-type", "application/json")
    if token:
        request.add_header("authorization", "Bearer " + token)
    data = json.dumps(body).encode() if body is not None else None
    with urllib.request.urlopen(request, data) as response:
        return json.loads(response.read() or b"null")


base, code = sys.argv[1], sys.argv[2]
user = {"email": "fuzz@example.com", "password": "schemathesis password", "name": "Fuzz"}
call(base, "POST", "/api/v1/setup", dict(user, setup_code=code))
session = call(base, "POST", "/api/v1/auth/login", {"email": user["email"], "password": user["password"]})
token = call(base, "POST", "/api/v1/tokens",
             {"name": "schemathesis", "role": "super_admin", "expires_in_days": 1},
             session["access_token"])
print(token["secret"])
