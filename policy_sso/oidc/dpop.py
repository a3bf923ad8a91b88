"""DPoP: proofs of possession and sender-constrained tokens (RFC 9449).

A DPoP proof is a JWT the client signs with a key it holds, its public key in
the header (§4.2). :func:`verify_proof` checks it as §4.3 lists: ``typ``
``dpop+jwt``, an asymmetric ``alg`` of the configured list (never ``none``
nor a MAC, §3.1), a public ``jwk`` only (§4.3 step 6), the signature by that
key, ``htm`` and ``htu`` naming this request, ``iat`` within the window, a
``jti`` used once (recorded with ``Store.use_jti``, so it holds across every
instance sharing the store, §11.1), ``ath`` the hash of the access token at a
resource (§7.1) and, when the tenant asks for them, a server nonce (§8, §9).

A token bound to the key carries ``cnf.jkt``, the key's RFC 7638 thumbprint
(§6.1); :func:`check_binding` is the resource's check that the proof's key is
that one (§7.1), and a bound token presented as a Bearer token is refused
(§7.2). Nonces are stateless: an HMAC of the current time slot, so any
instance with the state directory's key accepts them.
"""

from __future__ import annotations

import functools
import hashlib
import json
import math
import re
import time
import urllib.parse
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature

from policy_sso import b64url
from policy_sso.config import DpopSettings
from policy_sso.errors import InvalidRequest, OAuthError
from policy_sso.metrics import CpuMeter
from policy_sso.request import loads_json

PROOF_TYP = "dpop+jwt"
USED_PROOFS = "dpop"  # the use_jti namespace of spent proof jti values
NONCE_HEADER = "DPoP-Nonce"
NONCE_SLOT = 300  # seconds a server nonce is issued for; the previous slot's is still accepted
MAX_PROOF_CHARS = 8192  # a proof carries a public key: an RSA-4096 JWK fits many times over
MAX_JTI_CHARS = 256
# RFC 7638 §3.2: the required members of each key type, in lexicographic order
_THUMBPRINT_MEMBERS = {"RSA": ("e", "kty", "n"), "EC": ("crv", "kty", "x", "y"), "OKP": ("crv", "kty", "x")}
# private key members of every key type (RFC 7518 §6.2.2, §6.3.2, §6.4; RFC 8037 §2)
_PRIVATE_MEMBERS = frozenset({"d", "p", "q", "dp", "dq", "qi", "oth", "k"})
_KEY_TYPE_OF_ALG = {"ES256": "EC", "EdDSA": "OKP", "RS256": "RSA", "PS256": "RSA"}
MIN_RSA_BITS = 2048
# a proof's key is the client's choice: bounded so one verification cannot cost a hundred normal ones
# (measured: a 3072-bit modulus with a 3071-bit exponent 5.4 ms, 16384 bits with 64 bits 3.4 ms, against
# 0.05 ms for 2048 bits and 65537); real keys use 2048-4096 bits and 65537
MAX_RSA_BITS = 8192
MAX_RSA_EXPONENT_BITS = 64  # OpenSSL's own limit for moduli over 3072 bits (OPENSSL_RSA_MAX_PUBEXP_BITS)
KEY_CACHE_SIZE = 256  # public keys kept by thumbprint: a client proves with one key for many requests
REPLAYED = "the DPoP proof was already used"
# a proof made before the store last lost its records (Store.intact_since): its replay record may be gone
STALE = "the DPoP proof is older than the server's records of used proofs; send a new one"
# the proofs' signature verifications and the CPU they took, per process (GET /metrics)
VERIFICATIONS = CpuMeter()
_ECDSA_SHA256 = ec.ECDSA(hashes.SHA256())  # ES256's signature algorithm (RFC 7518 §3.4), made once
_BASE64URL = re.compile(r"[A-Za-z0-9_-]*")  # RFC 7515 §2: base64url without padding


class InvalidDpopProof(OAuthError):
    """RFC 9449 §5, §12.2: the DPoP proof is missing, malformed or does not fit the request."""

    error = "invalid_dpop_proof"
    status = 400


class UseDpopNonce(OAuthError):
    """RFC 9449 §8: the proof must carry the server nonce sent in the DPoP-Nonce header."""

    error = "use_dpop_nonce"
    status = 400


@dataclass(frozen=True, slots=True)
class Proof:
    """A verified DPoP proof: the key's thumbprint (what tokens are bound to), its jti, and its freshness.

    ``fresh_until`` is when the proof stops being accepted (its ``iat`` plus
    the window): its replay record need last no longer (§11.1). ``iat`` is
    when the client made it, whole seconds.
    """

    jkt: str
    jti: str
    fresh_until: int = 0
    iat: int = 0

    def replay_record(self) -> tuple[str, str, int]:
        """Return ``(namespace, key, expires_at)``: what ``Store.use_jti`` records to spend the proof."""
        return USED_PROOFS, hashlib.sha256(f"{self.jkt} {self.jti}".encode()).hexdigest(), self.fresh_until


def thumbprint(jwk: dict[str, Any]) -> str:
    """Return the JWK's SHA-256 thumbprint, base64url (RFC 7638 §3; RFC 9449 §6.1 ``jkt``)."""
    members = _THUMBPRINT_MEMBERS.get(jwk.get("kty", ""))
    if members is None or not all(isinstance(jwk.get(m), str) for m in members):
        raise InvalidDpopProof("the DPoP proof's jwk is not a usable public key")
    canonical = json.dumps({m: jwk[m] for m in members}, separators=(",", ":"), sort_keys=True)
    return b64url.encode(hashlib.sha256(canonical.encode("utf-8")).digest())


def access_token_hash(token: str) -> str:
    """Return ``ath``: base64url of the SHA-256 of the access token (RFC 9449 §4.2)."""
    return b64url.encode(hashlib.sha256(token.encode("ascii", "replace")).digest())


def same_uri(htu: Any, url: str) -> bool:
    """Return whether ``htu`` names ``url``, query and fragment aside (RFC 9449 §4.3, RFC 3986 §6.2)."""
    if not isinstance(htu, str):
        return False
    return _same_uri(htu, url)


@functools.lru_cache(maxsize=64)
def _same_uri(htu: str, url: str) -> bool:
    # cached: a client names the same endpoint URL in every proof (bounded, LRU)
    a, b = urllib.parse.urlsplit(htu), urllib.parse.urlsplit(url)
    return ((a.scheme.lower(), a.netloc.lower(), a.path or "/")
            == (b.scheme.lower(), b.netloc.lower(), b.path or "/"))


def server_nonce(mac: Callable[[str], str], now: int, slot_offset: int = 0) -> str:
    """Return the server nonce of the time slot of ``now`` (``slot_offset`` -1: the previous slot)."""
    return mac(f"dpop-nonce {now // NONCE_SLOT + slot_offset}")


def verify_proof(proof: str | None, *, method: str, url: str, now: int, settings: DpopSettings,
                 use_jti: Callable[[str, int], bool] | None, access_token: str | None = None,
                 nonce_mac: Callable[[str], str] | None = None,
                 intact_since: Callable[[], int] | None = None) -> Proof:
    """Return the verified proof of a request; raise InvalidDpopProof or UseDpopNonce (RFC 9449 §4.3).

    ``use_jti(key, expires_at)`` records the proof as used, False when it
    was (the store's ``use_jti``); it runs last, so a refused proof is not
    spent. None leaves the spending to the caller, who must record
    :meth:`Proof.replay_record` with its own single-use write and refuse
    the request with :data:`REPLAYED` when the record was there (a code's
    redemption: one store write for both). ``intact_since`` (the store's):
    a proof it spends that was made before the store last lost its records
    is refused as :data:`STALE`, its replay record may be gone.
    ``access_token`` is given at a resource: the proof's ``ath`` must be its
    hash. ``nonce_mac`` makes nonces (when ``settings.nonce``).
    """
    if not proof or len(proof) > MAX_PROOF_CHARS or proof.count(".") != 2:
        raise InvalidDpopProof("a single DPoP proof JWT is required in the DPoP header")
    header_b64, payload_b64, signature_b64 = proof.split(".")
    alg, jkt, key = _checked_header(header_b64, settings.algorithms)
    claims = _verified_claims(header_b64, payload_b64, signature_b64, key, alg)
    if claims.get("htm") != method:
        raise InvalidDpopProof(f"the DPoP proof's htm must be {method}")
    if not same_uri(claims.get("htu"), url):
        raise InvalidDpopProof(f"the DPoP proof's htu must be {url}")
    jti = claims.get("jti")
    if not isinstance(jti, str) or not jti or len(jti) > MAX_JTI_CHARS:
        raise InvalidDpopProof("the DPoP proof has no usable jti")
    iat = claims.get("iat")
    if not isinstance(iat, int | float) or isinstance(iat, bool) or not math.isfinite(iat):
        # NaN passes every comparison below and then makes int() raise (issue 14: finite times only)
        raise InvalidDpopProof("the DPoP proof has no iat")
    # §11.1: a proof is accepted only while fresh, so its jti need only be kept that long
    skew = 5  # a client's clock a little ahead of ours
    if iat < now - settings.proof_lifetime or iat > now + skew:
        raise InvalidDpopProof("the DPoP proof's iat is too old or in the future")
    if access_token is not None and claims.get("ath") != access_token_hash(access_token):
        raise InvalidDpopProof("the DPoP proof's ath is not the hash of the access token")
    if settings.nonce and nonce_mac is not None:
        got = claims.get("nonce")
        if got not in (server_nonce(nonce_mac, now), server_nonce(nonce_mac, now, -1)):
            raise UseDpopNonce("the DPoP proof must carry the server's nonce",
                               headers={NONCE_HEADER: server_nonce(nonce_mac, now)})
    verified = Proof(jkt, jti, int(iat) + settings.proof_lifetime + skew + 1, int(iat))
    if use_jti is not None:
        _, key, expires_at = verified.replay_record()
        if not use_jti(key, expires_at):
            raise InvalidDpopProof(REPLAYED)
        if intact_since is not None and verified.iat < intact_since():
            raise InvalidDpopProof(STALE)
    return verified


@functools.lru_cache(maxsize=KEY_CACHE_SIZE)
def _checked_header(header_b64: str, algorithms: tuple[str, ...]) -> tuple[str, str, Any]:
    """Return ``(alg, jkt, public key)`` of a proof's header that passes §4.3's checks; raise if not.

    Cached by the header's text: a client signs every proof with one key, so
    its proofs' headers are one text, decoded and checked once. Bounded (LRU,
    a header at most :data:`MAX_PROOF_CHARS`); a refused header raises and is
    not cached.
    """
    header = _json_object(header_b64)
    if header is None:
        raise InvalidDpopProof("the DPoP proof is not a JWT")
    if header.get("typ") != PROOF_TYP:
        raise InvalidDpopProof("the DPoP proof's typ must be dpop+jwt")
    alg = header.get("alg")
    if alg not in algorithms or alg not in _KEY_TYPE_OF_ALG:
        raise InvalidDpopProof(f"the DPoP proof's alg must be one of {' '.join(algorithms)}")
    if "crit" in header:
        # RFC 7515 §4.1.11: no extension is understood here, so a critical one cannot be honoured
        raise InvalidDpopProof("the DPoP proof's header names critical extensions")
    jwk = header.get("jwk")
    if not isinstance(jwk, dict):
        raise InvalidDpopProof("the DPoP proof's header has no jwk")
    if not _PRIVATE_MEMBERS.isdisjoint(jwk):
        # §4.3 step 6: the header carries the public key only
        raise InvalidDpopProof("the DPoP proof's jwk contains a private key")
    kty = jwk.get("kty")
    if kty != _KEY_TYPE_OF_ALG[alg]:
        raise InvalidDpopProof("the DPoP proof's jwk does not fit its alg")
    values = tuple(jwk.get(m) for m in _THUMBPRINT_MEMBERS[kty])
    if not all(isinstance(v, str) for v in values):
        raise InvalidDpopProof("the DPoP proof's jwk is not a usable public key")
    return (alg, *_public_key(kty, values))  # type: ignore[arg-type]


def _segment(text: str) -> bytes | None:
    """Return a base64url segment's bytes (RFC 7515 §2: unpadded), None when it is not one."""
    if len(text) % 4 == 1 or not _BASE64URL.fullmatch(text):
        return None
    return b64url.decode(text)


def _json_object(segment: str) -> dict[str, Any] | None:
    """Return the JSON object a base64url segment encodes, None when it is not one."""
    data = _segment(segment)
    if data is None:
        return None
    try:  # the proof is at most MAX_PROOF_CHARS: no huge document; no NaN, no lone surrogate
        value = loads_json(data, "the DPoP proof")
    except InvalidRequest:
        return None
    return value if isinstance(value, dict) else None


@functools.lru_cache(maxsize=KEY_CACHE_SIZE)
def _public_key(kty: str, members: tuple[str, ...]) -> tuple[str, Any]:
    """Return (RFC 7638 thumbprint, public key object) of a JWK's required members.

    Cached: a client proves with one key for its tokens' lifetime, so after
    the first proof neither the canonical JSON nor the key is made again.
    The members are exactly what the thumbprint hashes, so the cache is
    keyed by the thumbprint in effect, and bounded (LRU) against a flood of
    fresh keys. A key that is refused raises and is not cached.
    """
    jwk = dict(zip(_THUMBPRINT_MEMBERS[kty], members, strict=True), kty=kty)
    jkt = thumbprint(jwk)
    raw = {name: _segment(value) for name, value in jwk.items() if name not in ("kty", "crv")}
    if any(value is None for value in raw.values()):
        raise InvalidDpopProof("the DPoP proof's jwk is not a usable public key")
    try:
        if kty == "EC":
            if jwk["crv"] != "P-256" or len(raw["x"]) != 32 or len(raw["y"]) != 32:  # type: ignore[arg-type]
                # RFC 7518 §3.4: ES256 is ECDSA on P-256
                raise ValueError("not a P-256 point")
            key: Any = ec.EllipticCurvePublicKey.from_encoded_point(
                ec.SECP256R1(), b"\x04" + raw["x"] + raw["y"])  # type: ignore[operator]
        elif kty == "OKP":
            if jwk["crv"] != "Ed25519":  # RFC 8037 §3.1; RFC 9864 calls it Ed25519
                raise ValueError("not an Ed25519 key")
            key = ed25519.Ed25519PublicKey.from_public_bytes(raw["x"])  # type: ignore[arg-type]
        else:
            n, e = int.from_bytes(raw["n"], "big"), int.from_bytes(raw["e"], "big")  # type: ignore[arg-type]
            if n.bit_length() < MIN_RSA_BITS:
                raise InvalidDpopProof(f"the DPoP proof's RSA key is shorter than {MIN_RSA_BITS} bits")
            if n.bit_length() > MAX_RSA_BITS or e.bit_length() > MAX_RSA_EXPONENT_BITS:
                raise InvalidDpopProof("the DPoP proof's RSA key is larger than this server verifies")
            key = rsa.RSAPublicNumbers(e, n).public_key()
    except (ValueError, TypeError):
        raise InvalidDpopProof("the DPoP proof's jwk is not a usable public key") from None
    return jkt, key


def _verified_claims(header_b64: str, payload_b64: str, signature_b64: str, key: Any,
                     alg: str) -> dict[str, Any]:
    """Return the proof's claims once its signature verifies with ``key`` (RFC 7515 §5.2)."""
    signature = _segment(signature_b64)
    if not payload_b64.isascii():  # the payload is decoded once the signature verifies; never encode junk
        raise InvalidDpopProof("the DPoP proof's payload is not base64url")
    signing_input = f"{header_b64}.{payload_b64}".encode("ascii")
    started = time.thread_time()
    try:
        if signature is None:
            raise InvalidSignature
        if alg == "ES256":
            if len(signature) != 64:  # RFC 7518 §3.4: R and S, 32 octets each
                raise InvalidSignature
            der = encode_dss_signature(int.from_bytes(signature[:32], "big"),
                                       int.from_bytes(signature[32:], "big"))
            key.verify(der, signing_input, _ECDSA_SHA256)
        elif alg == "EdDSA":
            key.verify(signature, signing_input)
        elif alg == "RS256":
            key.verify(signature, signing_input, padding.PKCS1v15(), hashes.SHA256())
        else:  # PS256, RFC 7518 §3.5: MGF1 with SHA-256, a salt as long as the hash
            key.verify(signature, signing_input,
                       padding.PSS(mgf=padding.MGF1(hashes.SHA256()), salt_length=32), hashes.SHA256())
    except InvalidSignature:
        raise InvalidDpopProof("the DPoP proof's signature does not verify with its jwk") from None
    finally:
        VERIFICATIONS.add(alg, time.thread_time() - started)
    claims = _json_object(payload_b64)
    if claims is None:
        raise InvalidDpopProof("the DPoP proof's payload is not a JSON object")
    return claims


def check_binding(token_claims: dict[str, Any], proof: Proof | None) -> None:
    """Refuse a token presented without the proof its binding calls for (RFC 9449 §7.1, §7.2).

    ``proof`` is None for a Bearer presentation: a DPoP-bound token is then
    refused; with a proof, the token must be bound to the proof's key.
    """
    cnf = token_claims.get("cnf")
    jkt = cnf.get("jkt") if isinstance(cnf, dict) else None
    if proof is None:
        if jkt is not None:
            raise InvalidRequest("a DPoP-bound access token must be presented with the DPoP scheme",
                                 error="invalid_token", status=401)
        return
    if jkt != proof.jkt:
        raise InvalidRequest("the access token is not bound to the DPoP proof's key",
                             error="invalid_token", status=401)
