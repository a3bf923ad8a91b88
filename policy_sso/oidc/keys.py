"""Signing keys: generated on first start, kept in the state directory, published as a JWK Set.

Keys are PEM files under ``<state_dir>/keys/`` (directory 0700, files 0600),
named ``<alg>.<seq>.pem``; the highest ``seq`` of an algorithm signs, older
ones stay published so tokens they signed still verify after a rotation.
Every key is loaded once; signing never touches the disk. ``kid`` is the
RFC 7638 JWK thumbprint.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import threading
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


class SigningKeyError(PolicySSOError):
    """A signing key is missing, unreadable or of an unsupported algorithm."""


def _generate(alg: str) -> Any:
    if alg == "RS256":
        return rsa.generate_private_key(public_exponent=65537, key_size=2048)
    if alg == "ES256":
        return ec.generate_private_key(ec.SECP256R1())
    if alg == "EdDSA":
        return ed25519.Ed25519PrivateKey.generate()
    raise SigningKeyError(f"unsupported signing algorithm {alg!r}: one of {', '.join(SUPPORTED)}")


def _public_jwk(alg: str, private: Any) -> dict[str, Any]:
    algorithm = {"RS256": RSAAlgorithm, "ES256": ECAlgorithm, "EdDSA": OKPAlgorithm}[alg]
    return dict(algorithm.to_jwk(private.public_key(), as_dict=True))


def thumbprint(jwk: dict[str, Any]) -> str:
    """Return the RFC 7638 JWK thumbprint (SHA-256, base64url) of a public JWK."""
    members = {k: jwk[k] for k in _THUMBPRINT_MEMBERS[jwk["kty"]]}
    digest = hashlib.sha256(json.dumps(members, separators=(",", ":"), sort_keys=True).encode()).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode()


@dataclass(frozen=True)
class SigningKey:
    """One key: its algorithm, id, private key object and public JWK."""

    alg: str
    seq: int
    kid: str
    private: Any
    jwk: dict[str, Any]


def _write_private(path: Path, private: Any) -> None:
    pem = private.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                serialization.NoEncryption())
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as handle:
        handle.write(pem)


def _load(alg: str, seq: int, path: Path) -> SigningKey:
    private = serialization.load_pem_private_key(path.read_bytes(), password=None)
    jwk = _public_jwk(alg, private)
    kid = thumbprint(jwk)
    jwk.update(kid=kid, alg=alg, use="sig")
    return SigningKey(alg, seq, kid, private, jwk)


class KeyRing:
    """The provider's signing keys: current ones sign, all are published."""

    def __init__(self, directory: Path, keys: list[SigningKey]) -> None:
        self.directory = directory
        self._lock = threading.Lock()
        self._set(keys)

    def _set(self, keys: list[SigningKey]) -> None:
        self._keys = sorted(keys, key=lambda k: (k.alg, k.seq))
        self._current = {k.alg: k for k in self._keys}  # the highest seq of each alg wins
        self._by_kid = {k.kid: k for k in self._keys}
        self._jwks = {"keys": [k.jwk for k in reversed(self._keys)]}

    @classmethod
    def load_or_create(cls, state_dir: Path | str, algs: tuple[str, ...] | list[str] = SUPPORTED) -> KeyRing:
        """Return the keys in ``state_dir/keys``, generating one per missing algorithm (0600)."""
        directory = Path(state_dir) / "keys"
        directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        os.chmod(directory, 0o700)
        keys: list[SigningKey] = []
        for path in sorted(directory.glob("*.pem")):
            alg, _, seq = path.stem.partition(".")
            if alg in SUPPORTED and seq.isdigit():
                keys.append(_load(alg, int(seq), path))
        have = {k.alg for k in keys}
        for alg in ("RS256", *algs):  # RS256 is always available (OIDC Core §15.1)
            if alg not in have:
                path = directory / f"{alg}.0001.pem"
                _write_private(path, _generate(alg))
                keys.append(_load(alg, 1, path))
                have.add(alg)
        return cls(directory, keys)

    def rotate(self, alg: str) -> SigningKey:
        """Generate a new current key for ``alg``; the old ones stay published."""
        with self._lock:
            seq = max((k.seq for k in self._keys if k.alg == alg), default=0) + 1
            path = self.directory / f"{alg}.{seq:04d}.pem"
            _write_private(path, _generate(alg))
            key = _load(alg, seq, path)
            self._set([*self._keys, key])
            return key

    @property
    def algorithms(self) -> tuple[str, ...]:
        """Return the algorithms this ring can sign with."""
        return tuple(self._current)

    def jwks(self) -> dict[str, Any]:
        """Return the public JWK Set (RFC 7517 §5): every key, current ones first."""
        return self._jwks

    def signing_key(self, alg: str) -> tuple[str, Any]:
        """Return ``(kid, private key)`` of the current key for ``alg``."""
        key = self._current.get(alg)
        if key is None:
            raise SigningKeyError(f"no signing key for algorithm {alg!r}")
        return key.kid, key.private

    def sign(self, claims: dict[str, Any], alg: str, typ: str | None = None) -> str:
        """Return a JWS compact serialisation of ``claims`` signed with the current ``alg`` key."""
        kid, private = self.signing_key(alg)
        headers = {"kid": kid, "typ": typ or "JWT"}
        return jwt.encode(claims, private, algorithm=alg, headers=headers)

    def verify(self, token: str, *, algorithms: tuple[str, ...] | None = None, typ: str | None = None,
               options: dict[str, Any] | None = None) -> dict[str, Any]:
        """Return the claims of a token signed by one of these keys; raise jwt.InvalidTokenError.

        The key is chosen by ``kid`` and the header's ``alg`` must be that key's
        algorithm (and in ``algorithms``): no ``none``, no algorithm confusion.
        """
        header = jwt.get_unverified_header(token)
        key = self._by_kid.get(header.get("kid", ""))
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
