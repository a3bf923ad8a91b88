"""Client authentication at the token endpoint (RFC 6749 §2.3.1)."""

from __future__ import annotations

import base64
from pathlib import Path

import pytest

from policy_sso.config import Client, SecretRef
from policy_sso.errors import InvalidClient, InvalidRequest
from policy_sso.oidc.client_auth import ClientAuthenticator


@pytest.fixture
def auth(tmp_path: Path) -> ClientAuthenticator:
    (tmp_path / "web.secret").write_text("s3cret:with%chars\n")
    clients = {
        "web": Client("web", secret=SecretRef("file", "web.secret")),
        "spa": Client("spa", type="public"),
        "nosecret": Client("nosecret", secret=SecretRef("file", "missing.secret")),
    }
    return ClientAuthenticator(clients, tmp_path)


def basic(user: str, password: str) -> str:
    from urllib.parse import quote_plus

    raw = f"{quote_plus(user)}:{quote_plus(password)}".encode()
    return "Basic " + base64.b64encode(raw).decode()


def test_basic_and_post(auth: ClientAuthenticator) -> None:
    assert auth.authenticate(basic("web", "s3cret:with%chars"), {}).client_id == "web"
    posted = {"client_id": "web", "client_secret": "s3cret:with%chars"}
    assert auth.authenticate(None, posted).client_id == "web"
    assert auth.authenticate(None, {"client_id": "spa"}).client_id == "spa"


@pytest.mark.parametrize(("header", "form"), [
    (basic("web", "wrong"), {}),
    (None, {"client_id": "web", "client_secret": "wrong"}),
    (None, {"client_id": "web"}),
    (basic("ghost", "x"), {}),
    (None, {"client_id": "nosecret", "client_secret": ""}),
    (None, {}),
    ("Basic !!!", {}),
    ("Basic \u00e9YWJj", {}),  # a header byte past ASCII (waitress decodes headers as latin-1)
    ("Basic d2Vi=OnM=", {}),  # padding inside: not one base64 text
    (basic("spa", "anything"), {}),
], ids=["basic_wrong_secret", "post_wrong_secret", "confidential_without_secret", "unknown_client",
        "unconfigured_secret", "nothing", "malformed_basic", "non_ascii_basic", "inner_padding_basic",
        "public_with_secret"])
def test_refused(auth: ClientAuthenticator, header: str | None, form: dict) -> None:
    with pytest.raises(InvalidClient) as info:
        auth.authenticate(header, form)
    assert info.value.status == 401


def test_two_methods_at_once_is_invalid_request(auth: ClientAuthenticator) -> None:
    with pytest.raises(InvalidRequest):
        auth.authenticate(basic("web", "s3cret:with%chars"), {"client_secret": "s3cret:with%chars"})
    with pytest.raises(InvalidRequest):
        auth.authenticate(basic("web", "s3cret:with%chars"), {"client_id": "spa"})
