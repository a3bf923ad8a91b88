"""schemathesis against a live ``policy-sso serve`` with server/openapi.json (issue 15, acceptance 5).

A real server (the demo tenant copied to a temporary directory, SQLite in a
temporary state directory, a free loopback port) gets up to
``MAX_EXAMPLES`` generated requests per documented operation, each with the
credentials its security scheme names (the admin token, a client's
``client_credentials`` token, a user's token, client_secret_basic). Two
checks: no 5xx (``not_a_server_error``) and every response matches the
document (``response_schema_conformance``). The server's log is read at the
end: the error handler turns a bug into a 400, so an ``unhandled error``
line is the 500 that would otherwise go unseen.
"""

from __future__ import annotations

import base64
import json
import os
import shutil
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
from support import free_port

schemathesis = pytest.importorskip("schemathesis")
from hypothesis import HealthCheck, settings  # noqa: E402  (after the skip: schemathesis may be absent)
from schemathesis.checks import not_a_server_error, response_schema_conformance  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
DOCUMENT = ROOT / "server" / "openapi.json"
ADMIN = "admin-token-for-schemathesis-0123456789"
MAX_EXAMPLES = 25  # per operation: ~20 operations stay well under two minutes on a loaded machine
CLIENT = "portal-backend"  # a confidential client with the client_credentials grant

schema = schemathesis.openapi.from_path(DOCUMENT)
SECURITY = {(path, verb.upper()): (op.get("security") or [{}])[0]
            for path, item in json.loads(DOCUMENT.read_text())["paths"].items() for verb, op in item.items()}


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    """Serve a copy of the demo tenant (the admin API rewrites users.yaml); yield its URL and credentials."""
    tmp = tmp_path_factory.mktemp("openapi")
    config = tmp / "tenant"
    shutil.copytree(ROOT / "policies", config, ignore=shutil.ignore_patterns("tests", "yaml"))
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    log = (tmp / "serve.log").open("w+")
    proc = subprocess.Popen(
        [sys.executable, "-m", "policy_sso.cli", "serve", "--config", str(config), "--state-dir",
         str(tmp / "state"), "--port", str(port), "--issuer", url, "--log-level", "warning"],
        cwd=ROOT, env={**os.environ, "POLICY_SSO_ADMIN_TOKEN": ADMIN}, stdout=subprocess.PIPE, stderr=log,
        text=True)
    try:
        line = proc.stdout.readline()
        assert "policy-sso serving" in line, line + (tmp / "serve.log").read_text()
        secret = (config / "secrets" / f"{CLIENT}.secret").read_text().strip()
        basic = "Basic " + base64.b64encode(f"{CLIENT}:{secret}".encode()).decode()
        client_token = requests.post(f"{url}/token", data={"grant_type": "client_credentials"},
                                     headers={"Authorization": basic}, timeout=30).json()["access_token"]
        signed_in = requests.post(f"{url}/v1/auth/password",
                                  json={"username": "alice", "password": "wonderland"},
                                  headers={"Authorization": f"Bearer {client_token}"}, timeout=30).json()
        credentials = {"adminToken": f"Bearer {ADMIN}", "clientAccessToken": f"Bearer {client_token}",
                       "clientBasic": basic,
                       "userAccessToken": f"Bearer {signed_in.get('access_token', client_token)}"}
        yield {"url": url, "credentials": credentials, "log": tmp / "serve.log"}
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
        log.close()


@pytest.mark.slow
@schema.parametrize()
@settings(max_examples=MAX_EXAMPLES, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much,
                                 HealthCheck.data_too_large])
def test_every_operation_answers_as_documented(case: Any, live: dict[str, Any]) -> None:
    # the operation's own scheme, also when schemathesis tries a method the path does not answer
    schemes = SECURITY[(case.operation.path, case.operation.method.upper())]
    scheme = next(iter(schemes), None)  # the first listed; {} (none) is the alternative for /token and co
    headers = {"Authorization": live["credentials"][scheme]} if scheme else {}
    response = case.call(base_url=live["url"], headers=headers, timeout=30)
    case.validate_response(response, checks=[not_a_server_error, response_schema_conformance])


def test_the_server_logged_no_unhandled_error(live: dict[str, Any]) -> None:
    """Runs after the operations (file order): a bug answered 400 still leaves its line in the log."""
    text = live["log"].read_text()
    assert "unhandled error" not in text and "Traceback" not in text, text[-3000:]
