"""``policy-sso serve``: a real process serving the demo tenant with its state directory."""

from __future__ import annotations

import re
import signal
import stat
import subprocess
import sys
from pathlib import Path

import requests

from policy_sso.cli.serve import store_url

ROOT = Path(__file__).resolve().parents[2]


def test_serve_creates_state_and_serves(tmp_path: Path) -> None:
    state = tmp_path / "state"
    proc = subprocess.Popen([sys.executable, "-m", "policy_sso.cli", "serve", "--port", "0",
                             "--state-dir", str(state)], cwd=ROOT, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)
    try:
        line = proc.stdout.readline()
        port = re.search(r"on http://127\.0\.0\.1:(\d+)", line).group(1)
        base = f"http://127.0.0.1:{port}"
        assert requests.get(f"{base}/healthz", timeout=10).json() == {"status": "ok"}
        assert requests.get(f"{base}/jwks", timeout=10).json()["keys"]
        for key in [*(state / "keys").glob("*.pem"), state / "interaction.key"]:
            assert stat.S_IMODE(key.stat().st_mode) == 0o600, key
        assert (state / "policy-sso.db").exists()
        assert stat.S_IMODE(state.stat().st_mode) == 0o700
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=10) == 0


def test_serve_refuses_a_broken_tenant(tmp_path: Path) -> None:
    (tmp_path / "tenant.yaml").write_text("issuer: [\n")
    proc = subprocess.run([sys.executable, "-m", "policy_sso.cli", "serve", "--config", str(tmp_path),
                           "--state-dir", str(tmp_path / "s")], cwd=ROOT, capture_output=True, text=True,
                          timeout=60, check=False)
    assert proc.returncode == 1
    assert "tenant.yaml" in proc.stderr and "Traceback" not in proc.stderr


def test_store_url_precedence(tmp_path: Path) -> None:
    assert store_url("redis://h:6379/0", str(tmp_path), "sqlite:///var/x.db", tmp_path) == "redis://h:6379/0"
    assert store_url(None, str(tmp_path), "sqlite:///var/x.db", tmp_path) == f"sqlite:///{tmp_path}/policy-sso.db"
    assert store_url(None, None, "sqlite:///var/x.db", Path("var")) == "sqlite:///var/x.db"
