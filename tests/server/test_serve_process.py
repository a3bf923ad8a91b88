"""``policy-sso serve`` as a real process: its limit flags reach waitress, SIGHUP publishes rotated keys."""

from __future__ import annotations

import re
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests
from support import FromAddress

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def served(tmp_path: Path) -> Iterator[tuple[str, subprocess.Popen, Path]]:
    state = tmp_path / "state"
    proc = subprocess.Popen([sys.executable, "-m", "policy_sso.cli", "serve", "--port", "0", "--state-dir",
                             str(state), "--max-request-body-size", "1024", "--connection-limit", "64"],
                            cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        line = proc.stdout.readline()
        port = re.search(r"on http://127\.0\.0\.1:(\d+)", line).group(1)
        yield f"http://127.0.0.1:{port}", proc, state
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=10) == 0


def test_the_body_limit_flag_reaches_waitress(served: tuple[str, subprocess.Popen, Path]) -> None:
    base, _, _ = served
    resp = requests.post(f"{base}/token", data={"grant_type": "x" * 2048}, timeout=10)
    assert resp.status_code == 413
    assert resp.json()["error"] == "invalid_request"
    small = requests.post(f"{base}/token", data={"grant_type": "client_credentials"}, timeout=10)
    assert small.status_code == 401 and small.json()["error"] == "invalid_client"


Served = tuple[str, subprocess.Popen, Path]


def test_sighup_publishes_a_rotated_key_without_signing_with_it(served: Served) -> None:
    base, proc, state = served
    before = {k["kid"] for k in requests.get(f"{base}/jwks", timeout=10).json()["keys"]}
    rotated = subprocess.run([sys.executable, "-m", "policy_sso.cli", "keys", "rotate", "--state-dir",
                              str(state), "--alg", "RS256"], cwd=ROOT, capture_output=True, text=True,
                             timeout=60, check=True)
    new_kid = re.search(r"new signing key (\S+)", rotated.stdout).group(1)
    assert new_kid not in before
    proc.send_signal(signal.SIGHUP)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        published = [k["kid"] for k in requests.get(f"{base}/jwks", timeout=10).json()["keys"]]
        if new_kid in published:
            break
        time.sleep(0.1)
    assert new_kid in published and before <= set(published)
    assert (state / "keys" / "RS256.0002.published").exists()
    rs256 = [k for k in requests.get(f"{base}/jwks", timeout=10).json()["keys"] if k["alg"] == "RS256"]
    assert rs256[0]["kid"] != new_kid  # the signing key is listed first: still the old one


def test_a_trusted_proxys_forwarded_address_reaches_the_app(tmp_path: Path) -> None:
    """Behind a proxy the tenant trusts, the address it forwards is the client's; from others, ignored.

    Through ``serve`` itself: waitress would strip X-Forwarded-For before the app saw it.
    """
    config = tmp_path / "tenant"
    shutil.copytree(ROOT / "policies", config, ignore=shutil.ignore_patterns("tests"))
    with (config / "tenant.yaml").open("a", encoding="utf-8") as out:
        out.write("\ntrusted_proxies: [127.0.0.1/32]\n")
    proc = subprocess.Popen([sys.executable, "-m", "policy_sso.cli", "serve", "--port", "0", "--state-dir",
                             str(tmp_path / "state"), "--config", str(config), "--workers", "1"],
                            cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        port = re.search(r"on http://127\.0\.0\.1:(\d+)", proc.stdout.readline()).group(1)
        base = f"http://127.0.0.1:{port}"
        assert requests.get(f"{base}/healthz", headers={"X-Forwarded-For": "203.0.113.5"}, timeout=10).ok
        stranger = requests.Session()
        stranger.mount("http://", FromAddress("127.0.0.2"))  # a peer the tenant does not trust
        assert stranger.get(f"{base}/healthz", headers={"X-Forwarded-For": "198.51.100.7"}, timeout=10).ok
    finally:
        proc.send_signal(signal.SIGTERM)
        output = proc.communicate(timeout=10)[0]
    access = [line for line in output.splitlines() if "GET /healthz" in line]
    assert len(access) == 2, output
    assert access[0].endswith("ip=203.0.113.5"), access
    assert access[1].endswith("ip=127.0.0.2"), access
