"""The admin API (SPEC §4; the IBM App ID seed): end a user's sessions, set a password, reload policies.

Calls carry ``Authorization: Bearer <admin token>``; the token is read from
the environment variable or file ``tenant.yaml`` names and compared in
constant time. Without one configured, the admin API refuses every call.
"""

from __future__ import annotations

import hmac
import os
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

from policy_sso.audit.writer import request_now
from policy_sso.credentials import hash_password
from policy_sso.errors import InvalidRequest, InvalidToken, OAuthError
from policy_sso.oidc.credential_change import changed_passwords, revoke_grants_of
from policy_sso.oidc.enrolment import set_password_hash
from policy_sso.oidc.provider import Provider, end_session
from policy_sso.reload import ReloadResult
from policy_sso.sessions.model import ENDED_BY_ADMIN, PASSWORD_CHANGED

if TYPE_CHECKING:
    from policy_sso.tenant import Tenant

MIN_PASSWORD = 8
# characters (bytes) of the admin token: 32 random characters are beyond guessing, as for HMAC
# secrets (RFC 7518 §3.2: a key at least as long as the hash); a shorter one is refused at start
MIN_ADMIN_TOKEN = 32


class UserNotFound(OAuthError):
    error = "user_not_found"
    status = 404


def weak_admin_token(tenant: Tenant) -> str | None:
    """Return why the configured admin token may not be used (too short), or None (fine or none set)."""
    ref = tenant.settings.admin_token
    return _too_short(ref, ref.read(tenant.directory)) if ref else None


def _too_short(ref: Any, token: bytes | None) -> str | None:
    if not token or len(token) >= MIN_ADMIN_TOKEN:
        return None
    return (f"the admin token ({ref.describe()}) is {len(token)} characters; it must be at least "
            f"{MIN_ADMIN_TOKEN} (make one: python3 -c 'import secrets; print(secrets.token_urlsafe(32))')")


def check_admin(p: Provider, token: str | None) -> None:
    """Raise InvalidToken unless ``token`` is the configured admin token (constant-time compare)."""
    ref = p.tenant.settings.admin_token
    expected = ref.read(p.tenant.directory) if ref else None
    if not expected:
        raise InvalidToken("the admin API is disabled: no admin token is configured "
                           f"({ref.describe() if ref else 'admin_token in tenant.yaml'})")
    if weak := _too_short(ref, expected):  # changed since start (a file, a reload): fail closed
        raise InvalidToken(f"the admin API is disabled: {weak}")
    if not token or not hmac.compare_digest(token.encode(), expected):
        p.audit.record("admin.refused", request_now(), outcome="refused", reason="missing_or_wrong_token")
        raise InvalidToken("the admin token is missing or wrong",
                           headers={"WWW-Authenticate": 'Bearer error="invalid_token"'})


def end_user_sessions(p: Provider, subject: str, now: int, reason: str = ENDED_BY_ADMIN) -> int:
    """End every session of a user (each with back-channel logout, ``reason`` kept); return how many."""
    if p.user(subject) is None:
        raise UserNotFound(f"no user with subject {subject!r}")
    sessions = p.store.sessions_of(subject, now)
    for session in sessions:
        end_session(p, session.id, now, reason)
    p.audit.record("admin.sessions_ended", now, outcome="success", subject=subject, reason=reason,
                   sessions_ended=len(sessions))
    return len(sessions)


def set_password(p: Provider, subject: str, body: dict[str, Any], now: int) -> int:
    """Write a new argon2 hash into users.yaml, reload, and end every session of the user."""
    if p.user(subject) is None:
        raise UserNotFound(f"no user with subject {subject!r}")
    password = body.get("password")
    if not isinstance(password, str) or len(password) < MIN_PASSWORD:
        raise InvalidRequest(f"password must be a string of at least {MIN_PASSWORD} characters")
    # the old password's grants are revoked first: a store fault stops here, with nothing changed
    revoke_grants_of(p, subject, now)
    new_hash = hash_password(password)
    # the store is what every instance reads (issue 18); recorded against the users.yaml hash it
    # replaces, so instances that have not re-read users.yaml use it too
    set_password_hash(p, subject, new_hash, now)
    result = write_password_hash(p, subject, new_hash)
    if not result.applied:
        raise OAuthError("users.yaml was updated but the tenant did not reload: "
                         + "; ".join(str(d) for d in result.diagnostics), error="server_error", status=409)
    p.audit.record("admin.password_set", now, outcome="success", subject=subject)  # never the password
    return end_user_sessions(p, subject, now, PASSWORD_CHANGED)


def write_password_hash(p: Provider, subject: str, new_hash: str) -> ReloadResult:
    """Write ``subject``'s new hash into users.yaml and reload: the password then outlives the store.

    Raises UserNotFound or OAuthError (users.yaml unreadable), OSError when it cannot be written.
    """
    _rewrite_hash(p.tenant.directory / "users.yaml", subject, new_hash)
    return p.holder.reload()


def _rewrite_hash(path: Path, subject: str, new_hash: str) -> None:
    """Replace one user's password_hash value in place (comments and layout kept), atomically."""
    text = path.read_text(encoding="utf-8")
    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.YAMLError:
        raise OAuthError("users.yaml cannot be read", error="server_error", status=409) from None
    node = _password_node(root, subject)
    if node is None:
        raise UserNotFound(f"no user with subject {subject!r} in users.yaml")
    start, end = node.start_mark.index, node.end_mark.index  # the scalar's exact span
    updated = text[:start] + f'"{new_hash}"' + text[end:]
    fd, temp = tempfile.mkstemp(dir=path.parent, prefix=".users.", suffix=".yaml")
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        handle.write(updated)
    os.chmod(temp, path.stat().st_mode & 0o777)
    os.replace(temp, path)


def _password_node(root: yaml.Node | None, subject: str) -> yaml.ScalarNode | None:
    """Return the scalar node of ``users[i].password_hash`` for the user with ``sub: subject``."""
    if not isinstance(root, yaml.MappingNode):
        return None
    users = next((v for k, v in root.value if k.value == "users"), None)
    for entry in users.value if isinstance(users, yaml.SequenceNode) else ():
        if not isinstance(entry, yaml.MappingNode):
            continue
        fields = {k.value: v for k, v in entry.value if isinstance(k, yaml.ScalarNode)}
        sub = fields.get("sub")
        if isinstance(sub, yaml.ScalarNode) and sub.value == subject:
            node = fields.get("password_hash")
            return node if isinstance(node, yaml.ScalarNode) else None
    return None


def reload_policies(p: Provider, now: int | None = None) -> ReloadResult:
    """Reload the tenant; a set with any error is rejected whole and the running one stays.

    A user whose password hash changed in ``users.yaml`` is treated as after a
    password change (with ``now``): the old password's grants are revoked and
    the user's sessions end.
    """
    before = p.tenant.users
    result = p.holder.reload()
    if result.applied and now is not None:
        for subject in changed_passwords(before, p.tenant.users):
            revoke_grants_of(p, subject, now)
            end_user_sessions(p, subject, now, PASSWORD_CHANGED)
    return result
