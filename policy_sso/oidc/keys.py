"""Signing keys: generated on first start, kept in the state directory, published as a JWK Set.

Keys are PEM files under ``<state_dir>/keys/`` (directory 0700, files 0600),
named ``<alg>.<seq>.pem``. Every key is loaded once; signing never touches the
disk. ``kid`` is the RFC 7638 JWK thumbprint, so the same key always has the
same id on every instance that shares the state directory.

Rollover as relying parties expect it (OIDC Core §10.1.1): they cache
``/jwks`` for its ``max-age`` (:data:`JWKS_MAX_AGE`) and fetch it again only
when that ends or, at best, when an unknown ``kid`` arrives (openid-client at
most once a minute). So:

- a new key is *published* first: the first instance to load it writes
  ``<alg>.<seq>.published`` with the time (created whole, the first writer
  wins), so every instance on the state directory agrees on that moment,
  across restarts too;
- it *signs* only :data:`PUBLISH_AHEAD` seconds later: the JWKS cache
  lifetime, plus the time an instance may take to notice the key (it looks at
  the directory every :data:`RESCAN_INTERVAL` seconds, on a reload, and on an
  unknown ``kid``), plus a clock margin. Until then the previous key signs; a
  key never published (``keys rotate``, then a restart) waits like any other.
  The first key of an algorithm signs at once: there is nothing older to sign
  with, and no cache can hold a set without it and with another of its kind;
- an older key stays published until every token it signed has expired: the
  newest key's activation plus the longest token lifetime (access, ID and
  logout tokens) plus the clock margin. After that it is left out of the set
  (still on disk, still accepted from ``id_token_hint``).

Which key signs is decided by the token's own ``iat``, the request's clock
reading, so time stays an argument. Keys made before publication markers
existed (no ``*.published`` file in the directory) count as published long ago.

Only RS256 (always, OIDC Core §15.1), ES256 and EdDSA (Ed25519) are offered;
``none`` and every other algorithm are refused by name.
"""

from __future__ import annotations

import functools
import hashlib
import json
import logging
import os
import secrets
import stat
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from jwt.algorithms import ECAlgorithm, OKPAlgorithm, RSAAlgorithm

from policy_sso import b64url, jsonenc
from policy_sso.errors import PolicySSOError
from policy_sso.metrics import CpuMeter

SUPPORTED = ("RS256", "ES256", "EdDSA")
_THUMBPRINT_MEMBERS = {"RSA": ("e", "kty", "n"), "EC": ("crv", "kty", "x", "y"), "OKP": ("crv", "kty", "x")}
_KEY_TYPES = {"RS256": rsa.RSAPrivateKey, "ES256": ec.EllipticCurvePrivateKey,
              "EdDSA": ed25519.Ed25519PrivateKey}
_JWK_CODECS = {"RS256": RSAAlgorithm, "ES256": ECAlgorithm, "EdDSA": OKPAlgorithm}

log = logging.getLogger("policy_sso.keys")

JWKS_MAX_AGE = 300  # seconds: the Cache-Control max-age of /jwks, how long relying parties keep the set
RESCAN_INTERVAL = 30  # seconds between looks at the key directory for keys another process added
CLOCK_MARGIN = 30  # seconds the clocks of instances sharing a state directory may differ
PUBLISH_AHEAD = JWKS_MAX_AGE + RESCAN_INTERVAL + CLOCK_MARGIN  # published this long before it signs
DEFAULT_TOKEN_LIFETIME = 3600  # longest token lifetime until the tenant's is given (configure)


class SigningKeyError(PolicySSOError):
    """A signing key is missing, unreadable or of an unsupported algorithm."""


def _check_alg(alg: str) -> None:
    if alg not in SUPPORTED:
        raise SigningKeyError(f"unsupported signing algorithm {alg!r}: one of {', '.join(SUPPORTED)}")


def _generate(alg: str) -> Any:
    _check_alg(alg)
    if alg == "RS256":
        return rsa.generate_private_key(public_exponent=65537, key_size=2048)
    if alg == "ES256":
        return ec.generate_private_key(ec.SECP256R1())
    return ed25519.Ed25519PrivateKey.generate()


_JWS_ALGORITHMS = {alg: jwt.get_algorithm_by_name(alg) for alg in SUPPORTED}


@functools.lru_cache(maxsize=64)
def _header_segment(alg: str, kid: str, typ: str) -> bytes:
    """Return the encoded JOSE header of a token (RFC 7515 §4): the same for every token of a key and type."""
    header = json.dumps({"alg": alg, "kid": kid, "typ": typ}, separators=(",", ":"))
    return b64url.encode_bytes(header.encode())


def thumbprint(jwk: dict[str, Any]) -> str:
    """Return the RFC 7638 §3 JWK thumbprint (SHA-256, base64url) of a public JWK."""
    members = {k: jwk[k] for k in _THUMBPRINT_MEMBERS[jwk["kty"]]}
    digest = hashlib.sha256(json.dumps(members, separators=(",", ":"), sort_keys=True).encode()).digest()
    return b64url.encode(digest)


@dataclass(frozen=True)
class SigningKey:
    """One key: its algorithm, sequence number, id, private key object, public JWK, when first published."""

    alg: str
    seq: int
    kid: str
    private: Any
    jwk: dict[str, Any]
    published: int = 0  # epoch seconds; 0 for keys older than publication markers

    @property
    def signs_from(self) -> int:
        """Return when this key may sign: once caches of the JWKS without it have expired."""
        return self.published + PUBLISH_AHEAD if self.published else 0


def write_whole(path: Path, data: bytes) -> bool:
    """Create ``path`` holding ``data`` with mode 0600, all at once; return False if it already exists.

    The bytes go to a private temporary file first, which is hard-linked into
    place: a crash never leaves a half-written file, a reader never sees an
    empty one, and when two processes create the same file the first link
    wins (unlike rename, a link never replaces what another process wrote).
    """
    temporary = path.with_name(f".{path.name}.{secrets.token_hex(8)}.tmp")
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        try:
            os.link(temporary, path)
        except FileExistsError:
            return False
        return True
    finally:
        temporary.unlink(missing_ok=True)


def _write_private(path: Path, private: Any) -> bool:
    """Write a new key file whole with mode 0600; return False if ``path`` already exists."""
    return write_whole(path, private.private_bytes(serialization.Encoding.PEM,
                                                   serialization.PrivateFormat.PKCS8,
                                                   serialization.NoEncryption()))


def _load(alg: str, seq: int, path: Path, published: int = 0) -> SigningKey:
    mode = stat.S_IMODE(path.stat().st_mode)
    if mode & 0o077:  # SPEC §4: private keys are 0600; tighten rather than publish a readable key
        log.warning("signing key %s had mode %o; set to 0600", path.name, mode)
        os.chmod(path, 0o600)
    try:
        private = serialization.load_pem_private_key(path.read_bytes(), password=None)
    except (ValueError, TypeError) as err:
        raise SigningKeyError(f"signing key {path} is not a readable PEM private key") from err
    if not isinstance(private, _KEY_TYPES[alg]) or (
            alg == "ES256" and not isinstance(private.curve, ec.SECP256R1)):
        raise SigningKeyError(f"signing key {path} is not a {alg} key")
    jwk = dict(_JWK_CODECS[alg].to_jwk(private.public_key(), as_dict=True))
    jwk.pop("key_ops", None)  # RFC 7517 §4.3: use and key_ops SHOULD NOT be used together; use=sig says it
    kid = thumbprint(jwk)
    jwk.update(kid=kid, alg=alg, use="sig")
    return SigningKey(alg, seq, kid, private, jwk, published)


class _RingState(NamedTuple):
    keys: tuple[SigningKey, ...]  # by (alg, seq)
    by_kid: dict[str, SigningKey]
    current: dict[str, SigningKey]  # the signing key of each alg
    jwks: tuple[dict[str, Any], ...]  # the published public keys
    next_change: float  # when a key starts signing or leaves the set
    as_of: int  # the time this schedule was computed for


class KeyRing:
    """The provider's signing keys: which key of each algorithm signs when, and which are published."""

    def __init__(self, directory: Path, keys: list[SigningKey], *, now: int | None = None,
                 token_lifetime: int = DEFAULT_TOKEN_LIFETIME) -> None:
        self.directory = directory
        self.token_lifetime = token_lifetime
        self._lock = threading.Lock()
        self._signed = CpuMeter()  # by alg; its own lock, not _lock: a rotation holds that one a while
        self._scanned = _now(now)
        self._unknown_kid_scan = 0.0  # monotonic time of the last rescan an unknown kid caused
        self._set(keys, self._scanned)

    def _set(self, keys: list[SigningKey], now: int) -> None:
        # rebuilt whole and swapped in one assignment: readers see the old or the new ring, never half
        ordered = sorted(keys, key=lambda k: (k.alg, k.seq))
        current, published, next_change = _schedule(ordered, now, self.token_lifetime)
        # current keys first: clients that try keys in order find the signing key at once
        signing = {k.kid for k in current.values()}
        jwks = tuple(k.jwk for k in sorted(published, key=lambda k: (k.kid not in signing, -k.seq)))
        self._state = _RingState(tuple(ordered), {k.kid: k for k in ordered}, current, jwks, next_change, now)

    @classmethod
    def load_or_create(cls, state_dir: Path | str, algs: tuple[str, ...] | list[str] = SUPPORTED, *,
                       now: int | None = None, token_lifetime: int = DEFAULT_TOKEN_LIFETIME) -> KeyRing:
        """Return the keys in ``state_dir/keys``, generating one per missing algorithm (SPEC §4).

        The directory is made 0700 and each new key file 0600. RS256 is always
        present (OIDC Core §15.1). Keys of other supported algorithms already on
        disk are loaded and published even when ``algs`` does not name them.
        Loading publishes every key not yet published (see the module notes).
        """
        for alg in algs:
            _check_alg(alg)
        now = _now(now)
        directory = key_directory(state_dir)
        mark_legacy_keys(directory)
        for alg in dict.fromkeys(("RS256", *algs)):
            if not any(found_alg == alg for found_alg, _, _ in _key_files(directory)):
                # lost a race: the winner's key is loaded below
                _write_private(directory / f"{alg}.0001.pem", _generate(alg))
        keys = [_load(alg, int(seq), path, _published_at(directory, alg, seq, now))
                for alg, seq, path in _key_files(directory)]
        return cls(directory, keys, now=now, token_lifetime=token_lifetime)

    def reload(self, algs: tuple[str, ...] | list[str] = (), *, token_lifetime: int | None = None,
               now: int | None = None) -> tuple[str, ...]:
        """Load keys added on disk since (``keys rotate``, another instance) and make missing ``algs``.

        Return the kids of the keys this reload added.

        Called when the policies are reloaded (SIGHUP, ``POST /admin/v1/policies/reload``), with the
        tenant's algorithms and longest token lifetime.
        """
        for alg in algs:
            _check_alg(alg)
        now = _now(now)
        with self._lock:
            if token_lifetime is not None:
                self.token_lifetime = token_lifetime
            have = {k.alg for k in self._state.keys}
            for alg in algs:
                if alg not in have and not any(a == alg for a, _, _ in _key_files(self.directory)):
                    _write_private(self.directory / f"{alg}.0001.pem", _generate(alg))
            return tuple(key.kid for key in self._scan(now, strict=True))

    def rotate(self, alg: str, *, now: int | None = None) -> SigningKey:
        """Add and publish a new key for ``alg``; return it. It signs once published PUBLISH_AHEAD seconds."""
        _check_alg(alg)
        now = _now(now)
        with self._lock:
            path = create_key(self.directory, alg)
            self._scan(now, strict=True)
            return self._state.by_kid[_load(alg, 0, path).kid]

    def _scan(self, now: int, *, strict: bool = False) -> list[SigningKey]:
        """Load key files not loaded yet, publish them, and recompute the schedule (``_lock`` held).

        Return the keys added.
        """
        known = {(k.alg, k.seq) for k in self._state.keys}
        added = []
        for alg, seq, path in _key_files(self.directory):
            if (alg, int(seq)) in known:
                continue
            try:
                added.append(_load(alg, int(seq), path, _published_at(self.directory, alg, seq, now)))
            except (SigningKeyError, OSError):
                if strict:
                    raise
                log.exception("signing key %s could not be loaded; the others stay in use", path.name)
        self._scanned = now
        self._set([*self._state.keys, *added], now)
        if added:
            log.info("signing keys loaded: %s", ", ".join(f"{k.alg} {k.kid}" for k in added))
        return added

    def _refresh(self, now: int) -> None:
        """Bring the schedule up to ``now``; look at the directory every RESCAN_INTERVAL seconds."""
        if not self._lock.acquire(blocking=False):
            return  # another thread is at it; this request signs with what is in force
        try:
            if abs(now - self._scanned) >= RESCAN_INTERVAL:
                self._scan(now)
            else:
                self._set(self._state.keys, now)
        finally:
            self._lock.release()

    def _up_to(self, now: int) -> None:
        state = self._state
        if now >= state.next_change or now < state.as_of or now - self._scanned >= RESCAN_INTERVAL:
            self._refresh(now)

    @property
    def algorithms(self) -> tuple[str, ...]:
        """Return the algorithms this ring can sign with."""
        return tuple(self._state.current)

    def jwks(self, now: int | None = None) -> dict[str, Any]:
        """Return the public JWK Set (RFC 7517 §5) at ``now``: each key with kid, alg and use=sig.

        Keys published but not yet signing are in it; keys whose tokens have
        all expired are not. A fresh dict each call, so a caller that adds
        members cannot change what the next caller publishes.
        """
        self._up_to(_now(now))
        return {"keys": [dict(jwk) for jwk in self._state.jwks]}

    def signing_key(self, alg: str, now: int | None = None) -> tuple[str, Any]:
        """Return ``(kid, private key object)`` of the key that signs ``alg`` at ``now``."""
        if now is not None:
            self._up_to(now)
        key = self._state.current.get(alg)
        if key is None:
            raise SigningKeyError(f"no signing key for algorithm {alg!r}")
        return key.kid, key.private

    def sign(self, claims: dict[str, Any], alg: str, typ: str | None = None) -> str:
        """Return a JWS compact serialisation (RFC 7515 §3.1, §7.1) of ``claims`` signed with the current key.

        The key is the one in force at the token's ``iat`` (the request's
        clock reading; the wall clock when there is none). The header carries
        ``alg``, ``kid`` and ``typ`` (``JWT`` unless given, e.g. ``at+jwt`` for
        RFC 9068 §2.1, ``logout+jwt`` for Back-Channel Logout §2.4); its
        encoded segment is made once per key and type, so a token costs one
        JSON encoding of its claims and the signature (pyjwt's algorithm for
        ``alg``: PKCS#1 v1.5, raw r||s for ES256, Ed25519).
        """
        iat = claims.get("iat")
        kid, private = self.signing_key(alg, iat if type(iat) is int else _now(None))
        payload = b64url.encode_bytes(jsonenc.dumps(claims))
        signing_input = _header_segment(alg, kid, typ or "JWT") + b"." + payload
        started = time.thread_time()  # the signature alone: what /metrics reports it costs
        signature = _JWS_ALGORITHMS[alg].sign(signing_input, private)
        self._signed.add(alg, time.thread_time() - started)
        return (signing_input + b"." + b64url.encode_bytes(signature)).decode()

    def signing_stats(self) -> dict[str, tuple[int, float]]:
        """Return, by algorithm, the signatures made and the CPU seconds they took (for metrics)."""
        return self._signed.stats()

    def _key_for(self, kid: Any) -> SigningKey | None:
        key = self._state.by_kid.get(kid) if isinstance(kid, str) else None
        if key is None and isinstance(kid, str) and len(kid) <= 128:
            # another instance may sign with a key this one has not loaded yet: look, at most once a second
            moment = time.monotonic()
            if moment - self._unknown_kid_scan >= 1.0 and self._lock.acquire(blocking=False):
                try:
                    self._unknown_kid_scan = moment
                    self._scan(_now(None))
                finally:
                    self._lock.release()
                key = self._state.by_kid.get(kid)
        return key

    def verify(self, token: str, *, algorithms: tuple[str, ...] | None = None, typ: str | None = None,
               options: dict[str, Any] | None = None) -> dict[str, Any]:
        """Return the claims of a token signed by one of these keys; raise jwt.InvalidTokenError.

        The key is chosen by ``kid`` and the header's ``alg`` must be that key's
        algorithm (and in ``algorithms``): no ``none``, no algorithm confusion
        (RFC 8725 §3.1). With ``typ``, the header must carry that type, with or
        without the ``application/`` prefix (RFC 8725 §3.11).
        """
        header = jwt.get_unverified_header(token)
        key = self._key_for(header.get("kid"))
        if key is None:
            raise jwt.InvalidTokenError("unknown key id")
        allowed = algorithms or tuple({k.alg for k in self._state.keys})
        if header.get("alg") != key.alg or key.alg not in allowed:
            raise jwt.InvalidAlgorithmError("algorithm not allowed for this key")
        given = str(header.get("typ", "")).lower()
        if typ is not None and given not in (typ.lower(), f"application/{typ}".lower()):
            raise jwt.InvalidTokenError(f"typ must be {typ}")
        return jwt.decode(token, key.private.public_key(), algorithms=[key.alg],
                          options={"verify_aud": False, **(options or {})})


def _now(now: int | None) -> int:
    # the edge: only a caller without a clock reading (the CLI, a first start) gets the wall clock
    return int(time.time()) if now is None else int(now)


def _schedule(keys: list[SigningKey], now: int,
              token_lifetime: int) -> tuple[dict[str, SigningKey], list[SigningKey], float]:
    """Return the signing key of each alg at ``now``, the keys to publish, and when that next changes.

    ``keys`` are in (alg, seq) order. The newest key whose ``signs_from`` has
    come signs; before any has, the oldest (a first key signs at once). A key
    stays published until the key after it has signed for longer than any
    token lives (OIDC Core §10.1.1).
    """
    current: dict[str, SigningKey] = {}
    published: list[SigningKey] = []
    changes: list[int] = []
    by_alg: dict[str, list[SigningKey]] = {}
    for key in keys:
        by_alg.setdefault(key.alg, []).append(key)
    for alg, ring in by_alg.items():
        ready = [k for k in ring if k.signs_from <= now]
        current[alg] = ready[-1] if ready else ring[0]
        changes.extend(k.signs_from for k in ring if k.signs_from > now)
        for index, key in enumerate(ring):
            # a key stops signing when a newer one starts; its last token expires a lifetime later
            successors = [k.signs_from for k in ring[index + 1:]]
            if not successors or min(successors) == 0:
                # the newest key; or one superseded before publication markers, when is unknown: kept
                published.append(key)
                continue
            unpublish = min(successors) + token_lifetime + CLOCK_MARGIN
            if key is current[alg] or now < unpublish:
                published.append(key)
                if unpublish > now:
                    changes.append(unpublish)
    return current, published, min(changes, default=float("inf"))


def key_directory(state_dir: Path | str) -> Path:
    """Return ``state_dir/keys``, made 0700 if need be."""
    directory = Path(state_dir) / "keys"
    directory.mkdir(mode=0o700, parents=True, exist_ok=True)
    os.chmod(directory, 0o700)
    return directory


def create_key(directory: Path, alg: str) -> Path:
    """Write a new, not yet published key for ``alg`` with the next free sequence number; return its path."""
    _check_alg(alg)
    seq = max((int(s) for a, s, _ in _key_files(directory) if a == alg), default=0) + 1
    private = _generate(alg)
    while not _write_private(path := directory / f"{alg}.{seq:04d}.pem", private):
        seq += 1  # another process took this number meanwhile
    return path


def thumbprint_of(path: Path, alg: str) -> str:
    """Return the kid (RFC 7638 thumbprint) of the key file at ``path``."""
    return _load(alg, 0, path).kid


def mark_legacy_keys(directory: Path) -> None:
    """Mark keys made before publication markers as published long ago (they were served at once)."""
    files = _key_files(directory)
    if files and not any(directory.glob("*.published")):
        for alg, seq, _ in files:
            write_whole(_marker(directory, alg, seq), b"0\n")


def _marker(directory: Path, alg: str, seq: str) -> Path:
    return directory / f"{alg}.{seq}.published"


def _published_at(directory: Path, alg: str, seq: str, now: int) -> int:
    """Return when the key was first published, recording ``now`` if this is the first time."""
    marker = _marker(directory, alg, seq)
    if not marker.exists():
        write_whole(marker, f"{now}\n".encode())  # the first instance to publish it wins
    text = marker.read_text(encoding="ascii", errors="replace").strip()
    if text.isascii() and text.isdigit() and len(text) <= 12:
        return int(text)
    log.warning("publication marker %s is unreadable; its file time is used", marker.name)
    return int(marker.stat().st_mtime)


def _key_files(directory: Path) -> list[tuple[str, str, Path]]:
    """Return ``(alg, seq, path)`` for each key file in ``directory``, in name order."""
    found = []
    for path in sorted(directory.glob("*.pem")):
        alg, _, seq = path.stem.partition(".")
        if alg in SUPPORTED and seq.isascii() and seq.isdigit():
            found.append((alg, seq, path))
    return found
