"""docs/getting-started.md's curl flows, run as written against ``policy-sso serve``.

The page is a new user's first hour: its shell blocks are taken from the page
itself and run with bash and curl, the only change being the port (the page
says 8080, the test serves on a free one with the matching issuer).
"""

from __future__ import annotations

import json
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import jwt
import pytest
import requests

from tests.support import free_port

ROOT = Path(__file__).resolve().parents[2]
PAGE = ROOT / "docs" / "getting-started.md"
DOC_OP = "http://127.0.0.1:8080"

pytestmark = pytest.mark.skipif(shutil.which("curl") is None or shutil.which("bash") is None,
                                reason="docs/getting-started.md's examples need curl and bash: "
                                       "apt-get install curl")


def _blocks(section: str) -> list[str]:
    """Return the ```bash blocks of the page under the heading ``section`` (up to the next heading
    of its level or above; a ``#`` inside a block is a shell comment, not a heading)."""
    level = len(section.split(" ", 1)[0])
    blocks: list[str] = []
    inside, fence, block = False, None, []
    for line in PAGE.read_text().splitlines():
        if fence is None and line.startswith("#"):
            depth = len(line) - len(line.lstrip("#"))
            if line == section:
                inside = True
                continue
            if inside and depth <= level:
                break
        if line.startswith("```"):
            if fence is None:
                fence, block = line[3:].strip(), []
            else:
                if inside and fence == "bash":
                    blocks.append("\n".join(block) + "\n")
                fence = None
            continue
        if fence is not None:
            block.append(line)
    return blocks


@pytest.fixture(scope="module")
def op(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    port = free_port()
    issuer = f"http://127.0.0.1:{port}"
    state = tmp_path_factory.mktemp("getting-started")
    proc = subprocess.Popen([sys.executable, "-m", "policy_sso.cli", "serve", "--port", str(port),
                             "--issuer", issuer, "--state-dir", str(state), "--workers", "1"],
                            cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        banner = proc.stdout.readline()
        assert f"serving {issuer}" in banner, banner
        deadline = time.monotonic() + 30
        while requests.get(f"{issuer}/readyz", timeout=5).status_code != 200:  # the worker is up
            assert time.monotonic() < deadline, "the server did not get ready"
            time.sleep(0.1)
        yield issuer
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=15)


def _run(script: str, op: str) -> str:
    done = subprocess.run(["bash", "-euo", "pipefail", "-c", script.replace(DOC_OP, op)], check=False,
                          cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    return done.stdout


def _claims(token: str) -> dict:
    return jwt.decode(token, options={"verify_signature": False})


def _json_values(text: str) -> list[dict]:
    """Return the JSON objects curl printed one after another (no newline between them)."""
    decoder, values, at = json.JSONDecoder(), [], 0
    while at < len(text):
        if text[at].isspace():
            at += 1
            continue
        value, at = decoder.raw_decode(text, at)
        values.append(value)
    return values


def test_the_curl_sign_in_gives_tokens_and_userinfo(op: str) -> None:
    sign_in, refresh = _blocks("## 4. The same with curl only")[:2]
    tokens, userinfo = _json_values(_run(sign_in, op))
    assert _claims(tokens["id_token"])["sub"] == "u-alice"
    assert "refresh_token" in tokens  # offline_access was asked for
    assert userinfo["sub"] == "u-alice"
    # the refresh, introspect and revoke block runs in the same shell, after the sign-in
    *_, refreshed, introspected, revoked = _json_values(_run(sign_in + "\n" + refresh, op))
    assert "refresh_token" in refreshed and introspected["active"] is True and revoked == {}


def test_the_public_client_flow_uses_pkce_and_a_second_factor(op: str) -> None:
    (flow,) = _blocks("### A public client: PKCE and a second factor")
    exchange = flow[flow.index("curl -s -d grant_type=authorization_code -d client_id=spa"):]
    # the same exchange without the verifier first: refused, and the code is not spent by it
    without_verifier = exchange.replace('-d code_verifier="$VERIFIER"', "")
    assert without_verifier != exchange
    refused, tokens = _json_values(_run(flow.replace(exchange, without_verifier + exchange), op))
    assert refused["error"] == "invalid_grant"
    claims = _claims(tokens["id_token"])
    assert claims["aud"] == "spa" and claims["amr"] == ["otp", "pwd", "mfa"]
