"""Signing keys: generated on first start, kept in the state directory, published as a JWK Set.

Keys are PEM files under ``<state_dir>/keys/`` (directory 0700, files 0600),
named ``<alg>.<seq>.pem``; the highest ``seq`` of an algorithm signs, older
ones stay published so tokens they signed still verify after a rotation
(OIDC Core §10.1.1). Every key is loaded once; signing never touches the
disk. ``kid`` is the RFC 7638 JWK thumbprint, so the same key always has the
same id on every instance that shares the state directory.

Only RS256 (always, OIDC Core §15.1), ES256 and EdDSA (Ed25519) are offered;
``none`` and every other algorithm are refused by name.
"""

from __future__ import annotations

import base64
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
from typing import Any

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from jwt.algorithms import ECAlgorithm, OKPAlgorithm, RSAAlgorithm

from policy_sso.errors import PolicySSOError

SUPPORTED = ("RS256", "ES256", "EdDSA")
_THUMBPRINT_MEMBERS = {"RSA": ("e", "kty", "n"), "EC": ("crv", "kty", "x", "y"), "OKP": ("crv", "kty", "x")}
_KEY_TYPES = {"RS256": rsa.RSAPrivateKey, "ES256": ec.EllipticCurvePrivateKey,
              "EdDSA": ed25519.Ed25519PrivateKey}
_JWK_CODECS = {"RS256": RSAAlgorithm, "ES256": ECAlgorithm, "EdDSA": OKPAlgorithm}

log = logging.getLogger("policy_sso.keys")


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
_CLAIMS_JSON = json.JSONEncoder(separators=(",", ":")).encode  # built once: dumps() builds one per call


def _b64(data: bytes) -> bytes:
    return base64.urlsafe_b64encode(data).rstrip(b"=")


@functools.lru_cache(maxsize=64)
def _header_segment(alg: str, kid: str, typ: str) -> bytes:
    """Return the encoded JOSE header of a token (RFC 7515 §4): the same for every token of a key and type."""
    return _b64(json.dumps({"alg": alg, "kid": kid, "typ": typ}, separators=(",", ":")).encode())


def thumbprint(jwk: dict[str, Any]) -> str:
    """Return the RFC 7638 §3 JWK thumbprint (SHA-256, base64url) of a public JWK."""
    members = {k: jwk[k] for k in _THUMBPRINT_MEMBERS[jwk["kty"]]}
    digest = hashlib.sha256(json.dumps(members, separators=(",", ":"), sort_keys=True).encode()).digest()
    return _b64(digest).decode()


@dataclass(frozen=True)
class SigningKey:
    """One key: its algorithm, sequence number, id, private key object and public JWK."""

    alg: str
    seq: int
    kid: str
    private: Any
    jwk: dict[str, Any]


def _write_private(path: Path, private: Any) -> bool:
    """Write a new key file atomically with mode 0600; return False if ``path`` already exists.

    The PEM goes to a private temporary file first and is hard-linked into
    place: a crash never leaves a half-written key, and when two instances
    start on one state directory the first link wins and the other loads it.
    """
    pem = private.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                serialization.NoEncryption())
    temporary = path.with_name(f".{path.name}.{secrets.token_hex(8)}.tmp")
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(pem)
            handle.flush()
            os.fsync(handle.fileno())
        try:
            os.link(temporary, path)  # unlike rename, never replaces a key another process wrote
        except FileExistsError:
            return False
        return True
    finally:
        temporary.unlink(missing_ok=True)


def _load(alg: str, seq: int, path: Path) -> SigningKey:
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
    kid = thumbprint(jwk)
    jwk.update(kid=kid, alg=alg, use="sig")
    return SigningKey(alg, seq, kid, private, jwk)


class KeyRing:
    """The provider's signing keys: the current key of each algorithm signs, all are published."""

    def __init__(self, directory: Path, keys: list[SigningKey]) -> None:
        self.directory = directory
        self._lock = threading.Lock()
        self._signed: dict[str, tuple[int, float]] = {}  # alg -> signatures, thread CPU seconds
        self._signed_lock = threading.Lock()  # not _lock: a rotation holds that while it generates a key
        self._set(keys)

    def _set(self, keys: list[SigningKey]) -> None:
        # rebuilt whole and swapped: readers on other threads see the old or the new ring, never half
        ordered = sorted(keys, key=lambda k: (k.alg, k.seq))
        self._keys = ordered
        self._current = {k.alg: k for k in ordered}  # the highest seq of each alg wins
        self._by_kid = {k.kid: k for k in ordered}
        # current keys first: clients that try keys in order find the signing key at once
        current = {k.kid for k in self._current.values()}
        self._jwks_keys = tuple(k.jwk for k in sorted(ordered, key=lambda k: (k.kid not in current, -k.seq)))

    @classmethod
    def load_or_create(cls, state_dir: Path | str, algs: tuple[str, ...] | list[str] = SUPPORTED) -> KeyRing:
        """Return the keys in ``state_dir/keys``, generating one per missing algorithm (SPEC §4).

        The directory is made 0700 and each new key file 0600. RS256 is always
        present (OIDC Core §15.1). Keys of other supported algorithms already on
        disk are loaded and published even when ``algs`` does not name them.
        """
        for alg in algs:
            _check_alg(alg)
        directory = Path(state_dir) / "keys"
        directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        os.chmod(directory, 0o700)
        keys = [_load(alg, int(seq), path) for alg, seq, path in _key_files(directory)]
        have = {k.alg for k in keys}
        for alg in dict.fromkeys(("RS256", *algs)):
            if alg in have:
                continue
            path = directory / f"{alg}.0001.pem"
            _write_private(path, _generate(alg))  # lost a race: the winner's key is loaded below
            keys.append(_load(alg, 1, path))
            have.add(alg)
        return cls(directory, keys)

    def rotate(self, alg: str) -> SigningKey:
        """Generate and return a new current key for ``alg``; older keys stay published (§10.1.1)."""
        _check_alg(alg)
        with self._lock:
            seq = max((k.seq for k in self._keys if k.alg == alg), default=0) + 1
            theirs = []
            while True:
                path = self.directory / f"{alg}.{seq:04d}.pem"
                if _write_private(path, _generate(alg)):
                    break
                # another process rotated meanwhile: publish its key too and take the next number
                theirs.append(_load(alg, seq, path))
                seq += 1
            key = _load(alg, seq, path)
            self._set([*self._keys, *theirs, key])
            return key

    @property
    def algorithms(self) -> tuple[str, ...]:
        """Return the algorithms this ring can sign with."""
        return tuple(self._current)

    def jwks(self) -> dict[str, Any]:
        """Return the public JWK Set (RFC 7517 §5): every key with kid, alg and use=sig.

        A fresh dict each call, so a caller that adds members cannot change
        what the next caller publishes.
        """
        return {"keys": [dict(jwk) for jwk in self._jwks_keys]}

    def signing_key(self, alg: str) -> tuple[str, Any]:
        """Return ``(kid, private key object)`` of the current key for ``alg``."""
        key = self._current.get(alg)
        if key is None:
            raise SigningKeyError(f"no signing key for algorithm {alg!r}")
        return key.kid, key.private

    def sign(self, claims: dict[str, Any], alg: str, typ: str | None = None) -> str:
        """Return a JWS compact serialisation (RFC 7515 §3.1, §7.1) of ``claims`` signed with the current key.

        The header carries ``alg``, ``kid`` and ``typ`` (``JWT`` unless given,
        e.g. ``at+jwt`` for RFC 9068 §2.1, ``logout+jwt`` for Back-Channel
        Logout §2.4); its encoded segment is made once per key and type, so a
        token costs one JSON encoding of its claims and the signature (pyjwt's
        algorithm for ``alg``: PKCS#1 v1.5, raw r||s for ES256, Ed25519).
        """
        kid, private = self.signing_key(alg)
        started = time.thread_time()
        signing_input = _header_segment(alg, kid, typ or "JWT") + b"." + _b64(_CLAIMS_JSON(claims).encode())
        signature = _JWS_ALGORITHMS[alg].sign(signing_input, private)
        token = (signing_input + b"." + _b64(signature)).decode()
        spent = time.thread_time() - started
        with self._signed_lock:
            count, seconds = self._signed.get(alg, (0, 0.0))
            self._signed[alg] = (count + 1, seconds + spent)
        return token

    def signing_stats(self) -> dict[str, tuple[int, float]]:
        """Return, by algorithm, the signatures made and the CPU seconds they took (for metrics)."""
        with self._signed_lock:
            return dict(self._signed)

    def verify(self, token: str, *, algorithms: tuple[str, ...] | None = None, typ: str | None = None,
               options: dict[str, Any] | None = None) -> dict[str, Any]:
        """Return the claims of a token signed by one of these keys; raise jwt.InvalidTokenError.

        The key is chosen by ``kid`` and the header's ``alg`` must be that key's
        algorithm (and in ``algorithms``): no ``none``, no algorithm confusion
        (RFC 8725 §3.1). With ``typ``, the header must carry that type, with or
        without the ``application/`` prefix (RFC 8725 §3.11).
        """
        header = jwt.get_unverified_header(token)
        kid = header.get("kid")
        key = self._by_kid.get(kid) if isinstance(kid, str) else None
        if key is None:
            raise jwt.InvalidTokenError("unknown key id")
        allowed = algorithms or self.algorithms
        if header.get("alg") != key.alg or key.alg not in allowed:
            raise jwt.InvalidAlgorithmError("algorithm not allowed for this key")
        given = str(header.get("typ", "")).lower()
        if typ is not None and given not in (typ.lower(), f"application/{typ}".lower()):
            raise jwt.InvalidTokenError(f"typ must be {typ}")
        return jwt.decode(token, key.private.public_key(), algorithms=[key.alg],
                          options={"verify_aud": False, **(options or {})})


def _key_files(directory: Path) -> list[tuple[str, str, Path]]:
    """Return ``(alg, seq, path)`` for each key file in ``directory``, in name order."""
    found = []
    for path in sorted(directory.glob("*.pem")):
        alg, _, seq = path.stem.partition(".")
        if alg in SUPPORTED and seq.isascii() and seq.isdigit():
            found.append((alg, seq, path))
    return found
