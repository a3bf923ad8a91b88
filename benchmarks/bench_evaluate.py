"""Microseconds per decision: the compiled evaluator against a hand-written floor.

Also: the time to load and validate a generated tenant of 10,000 policies.
Run: python benchmarks/bench_evaluate.py   (prints figures; not a timed test)
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
import time
import timeit
from importlib.resources import files
from pathlib import Path

from lark import Lark

from policy_sso.decision import ALLOW, Decision, Reason
from policy_sso.networks import client_ip
from policy_sso.request import AuthRequest
from policy_sso.sessions.model import AuthEvent, Session
from policy_sso.tenant import load_tenant

NOW = 1_767_268_800
# The reference: lark's own LALR parser and contextual lexer building a parse tree.
PLAIN_LARK = Lark(files("policy_sso.parse").joinpath("grammar.lark").read_text(), parser="lalr")

TENANT = """\
issuer: http://127.0.0.1:8080
session: {lifetime: 14d, require_login_after: 30d, inactivity: 1d}
acr_levels:
  - {id: loa1, requires: {amr: {any_of: [pwd, otp, hwk]}}}
  - {id: loa2, requires: {mfa: true}}
  - {id: loa3, requires: {mfa: true, amr: {all_of: [hwk]}}}
methods: [pwd, otp, hwk, wia]
default_policy: p0
policy_files: ["*.policy"]
scopes: [write, "payments:write", "docs:admin"]  # what the policies test beyond the clients' scopes
"""

# Ten requirements: inactivity, max_auth_age, amr any_of, amr all_of, mfa, acr, consent,
# and three conditional ones (step-up on a scope, hwk for loa3, mfa for a client).
POLICY = """\
policy "p{i}" {{
  clients "c{i}"
  session {{
    inactivity 1h
    max_auth_age 8h
  }}
  require amr any_of "pwd", "hwk"
  require amr all_of "pwd"
  require mfa
  require acr "loa2"
  require consent "openid", "profile"
  when scope has "write" {{
    require mfa within 5m
  }}
  when acr_values has "loa3" and not prompt is "login" {{
    require amr all_of "hwk"
  }}
  when client is "c{i}" and session amr has "wia" {{
    require amr all_of "otp"
  }}
}}
"""


# The shapes of the demo tenant's policies (policies/*.policy), renamed per copy.
DEMO_SHAPES = [
    """policy "p{i}" {{
  clients "c{i}"
  require amr any_of "pwd", "wia", "hwk"
}}
""",
    """policy "p{i}" {{
  clients "c{i}"
  session {{
    inactivity 15m
    max_auth_age 8h
  }}
  require mfa
  require acr "loa2"
  require consent "openid", "profile"
  on_unmet interaction_required
  when scope has "payments:write" {{
    require mfa within 5m
  }}
}}
""",
    """policy "p{i}" {{
  clients "c{i}"
  require amr any_of "pwd", "wia"
  when scope has "docs:admin" {{
    require mfa within 5m
  }}
  when acr_values has "loa3" and not prompt is "login" {{
    require amr all_of "hwk"
  }}
}}
""",
    """policy "p{i}" {{
  clients "c{i}"
  session {{
    inactivity 1h
  }}
  require amr all_of "pwd"
  require mfa
  on_unmet unmet_authentication_requirements
}}
""",
]


def write_tenant(directory: Path, policies: int, per_file: int = 100,
                 shapes: list[str] | None = None) -> None:
    """Write a tenant with ``policies`` policies, one client each (dense ones unless ``shapes``)."""
    shapes = shapes or [POLICY]
    (directory / "tenant.yaml").write_text(TENANT)
    clients = "".join(f'  - {{client_id: c{i}, secret: {{env: X}}, redirect_uris: ["http://127.0.0.1/cb"]}}\n'
                      for i in range(policies))
    (directory / "clients.yaml").write_text("clients:\n" + clients)
    (directory / "users.yaml").write_text("users: []\n")
    for start in range(0, policies, per_file):
        text = "\n".join(shapes[i % len(shapes)].format(i=i)
                          for i in range(start, min(start + per_file, policies)))
        (directory / f"f{start // per_file:04d}.policy").write_text(text)


# --- the floor: the same checks, written by hand ---------------------------------

RANK = {"loa1": 0, "loa2": 1, "loa3": 2}
REQUIRED = frozenset({"openid", "profile"})
EMPTY: frozenset[str] = frozenset()


def _acr_rank(s: Session) -> int:
    m = s.methods
    if s.mfa and "hwk" in m:
        return 2
    if s.mfa:
        return 1
    return 0 if ("pwd" in m or "otp" in m or "hwk" in m) else -1


def hand_written(r: AuthRequest, s: Session | None, now: int) -> Decision | list:
    """The checks of POLICY, written as plain Python, producing the same reasons."""
    if s is None:
        return ["no_session"]
    out: list = []
    if now - s.auth_time > 1209600:
        out.append(Reason("session_expired", "14d", f"{now - s.auth_time}", "f:1"))
    if now - s.created_at > 2592000:
        out.append(Reason("absolute_lifetime_exceeded", "30d", f"{now - s.created_at}", "f:1"))
    if now - s.last_seen > 3600:
        out.append(Reason("inactivity_timeout", "1h", f"{now - s.last_seen}", "f:4"))
    if r.max_age is not None and (r.max_age == 0 or now - s.auth_time > r.max_age):
        out.append(Reason("max_age_exceeded", f"{r.max_age}", f"{now - s.auth_time}", "f:1"))
    if now - s.auth_time > 28800:
        out.append(Reason("max_age_exceeded", "8h", f"auth_time {now - s.auth_time}s ago", "f:5"))
    if "login" in r.prompt:
        out.append(Reason("prompt_login", "", "", "f:1"))
    if (r.id_token_hint_sub is not None and r.id_token_hint_sub != s.subject) or (
            r.login_hint_sub is not None and r.login_hint_sub != s.subject):
        out.append(Reason("subject_mismatch", "", "", "f:1"))
    m = s.methods
    if "pwd" not in m and "hwk" not in m:
        out.append(Reason("amr_missing", "pwd|hwk", ",".join(m), "f:7"))
    if "pwd" not in m:
        out.append(Reason("amr_missing", "pwd", ",".join(m), "f:8"))
    if not s.mfa:
        out.append(Reason("mfa_required", "mfa", ",".join(m), "f:9"))
    if _acr_rank(s) < 1:
        out.append(Reason("acr_insufficient", "loa2", str(_acr_rank(s)), "f:10"))
    granted = s.consents.get(r.client_id, EMPTY)
    if not granted >= REQUIRED:
        out.append(Reason("consent_missing", "openid profile", " ".join(granted), "f:11"))
    if r.essential_acr and _acr_rank(s) < min(RANK.get(v, 3) for v in r.essential_acr):
        out.append(Reason("acr_insufficient", "", "", "f:1"))
    if not r.scopes <= granted:
        out.append(Reason("consent_missing", "", "", "f:1"))
    if "consent" in r.prompt:
        out.append(Reason("prompt_consent", "", "", "f:1"))
    if "write" in r.scopes and s.mfa and (s.second_factor_time is None or now - s.second_factor_time > 300):
        out.append(Reason("step_up_required", "5m", "", "f:13"))
    if "loa3" in r.acr_values and "login" not in r.prompt and "hwk" not in m:
        out.append(Reason("amr_missing", "hwk", ",".join(m), "f:16"))
    if r.client_id == "c0" and "wia" in m and "otp" not in m:
        out.append(Reason("amr_missing", "otp", ",".join(m), "f:19"))
    if not out:
        return ALLOW_DECISION
    return Decision("login_required", tuple(out), None, "p0")


ALLOW_DECISION = Decision(ALLOW, (), None, "p0")


# --- a network condition (issue 19): the same policy, a fresh second factor outside the office ----

NETWORKS = 'networks: {office: ["10.0.0.0/8", "192.168.0.0/16"]}\n'
NETWORK_BLOCK = """  when not network in office {{
    require mfa within 1h
  }}
}}
"""
NETWORK_POLICY = POLICY.removesuffix("}}\n") + NETWORK_BLOCK


def hand_written_network(r: AuthRequest, s: Session | None, now: int) -> Decision | list:
    """hand_written's checks plus the network block: the request's address key (IPv4-mapped,
    parsed once per request) against the office's two prefixes, as integers."""
    decision = hand_written(r, s, now)
    if s is None:
        return decision
    n, ip = r.client_key, r.client_ip
    inside = n is not None and (n >> 24 == 0xFFFF0A or n >> 16 == 0xFFFFC0A8)
    if not inside and s.mfa and (s.second_factor_time is None or now - s.second_factor_time > 3600):
        # the observation formatted as the other floor reasons are (the compiled reason formats it when read)
        reason = Reason("step_up_required", "1h", f"second factor {now - (s.second_factor_time or 0)}s ago; "
                        f"client address {ip} not in office", "f:22")
        if decision is ALLOW_DECISION:
            return Decision("login_required", (reason,), None, "p0")
        return Decision(decision.outcome, (*decision.reasons, reason), None, "p0")
    return decision


def network_rows(work: Path, number: int) -> list[tuple[str, float, float]]:
    """Return (case, compiled µs, hand-written µs) for the policy with a network condition."""
    directory = work / "network"
    directory.mkdir()
    write_tenant(directory, 1, shapes=[NETWORK_POLICY])
    (directory / "tenant.yaml").write_text(TENANT + NETWORKS)
    compiled = load_tenant(directory).evaluator("c0")
    consents = {"c0": frozenset({"openid", "profile", "write"})}
    fresh = Session("s", "u1", NOW - 3600, NOW - 60,
                    (AuthEvent("pwd", NOW - 3600), AuthEvent("otp", NOW - 120)), {}, consents)
    stale = Session("s", "u1", NOW - 3 * 3600, NOW - 60,
                    (AuthEvent("pwd", NOW - 3 * 3600), AuthEvent("otp", NOW - 2 * 3600)), {}, consents)
    params = {"scope": "openid profile", "prompt": "none"}
    inside = AuthRequest.from_params("c0", params, client_ip=client_ip("10.1.2.3"))
    outside = AuthRequest.from_params("c0", params, client_ip=client_ip("203.0.113.5"))
    cases = [("allow, inside", inside, stale, ()), ("allow, outside", outside, fresh, ()),
             ("deny, outside", outside, stale, ("step_up_required",))]
    rows = []
    for name, request, session, codes in cases:
        ours, floor = compiled.decide(request, session, NOW), hand_written_network(request, session, NOW)
        assert ours.codes == codes == tuple(r.code for r in floor.reasons), (name, ours.codes, floor)
        count = number if not codes else number // 4
        rows.append((name, per_call_us(compiled.decide, request, session, NOW, number=count),
                     per_call_us(hand_written_network, request, session, NOW, number=count)))
    return rows


def per_file_count(directory: Path) -> int:
    """Return how many policies the first policy file of a generated tenant holds."""
    first = sorted(directory.glob("*.policy"))[0]
    return first.read_text().count("policy \"")


def per_call_us(fn, *args, number: int) -> float:
    """Return the best-of-5 microseconds per call."""
    timer = timeit.Timer(lambda: fn(*args))
    return min(timer.repeat(repeat=5, number=number)) / number * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--policies", type=int, default=10_000)
    parser.add_argument("--number", type=int, default=100_000)
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="bench-evaluate-"))
    try:
        small = work / "small"
        small.mkdir()
        write_tenant(small, 1)
        tenant = load_tenant(small)
        compiled = tenant.evaluator("c0")
        consents = {"c0": frozenset({"openid", "profile", "write"})}
        allow_session = Session("s", "u1", NOW - 3600, NOW - 60,
                                (AuthEvent("pwd", NOW - 3600), AuthEvent("otp", NOW - 120)), {}, consents)
        deny_session = Session("s", "u1", NOW - 9 * 3600, NOW - 60,
                               (AuthEvent("pwd", NOW - 9 * 3600),), {}, consents)
        request = AuthRequest.from_params("c0", {"scope": "openid profile write", "prompt": "none"})

        allowed = compiled.decide(request, allow_session, NOW)
        denied = compiled.decide(request, deny_session, NOW)
        assert allowed.allowed, allowed
        assert sorted(denied.codes) == ["acr_insufficient", "max_age_exceeded", "mfa_required"], denied.codes
        floor_deny = hand_written(request, deny_session, NOW)
        assert sorted(r.code for r in floor_deny.reasons) == sorted(denied.codes)

        rows = [
            ("allow", per_call_us(compiled.decide, request, allow_session, NOW, number=args.number),
             per_call_us(hand_written, request, allow_session, NOW, number=args.number)),
            ("deny, 3 reasons",
             per_call_us(compiled.decide, request, deny_session, NOW, number=args.number // 4),
             per_call_us(hand_written, request, deny_session, NOW, number=args.number // 4)),
        ]
        print("policy of 10 requirements (18 checks after compilation)")
        print(f"{'case':<18}{'compiled µs':>13}{'hand-written µs':>17}{'ratio':>8}")
        for name, ours, floor in rows:
            print(f"{name:<18}{ours:>13.3f}{floor:>17.3f}{ours / floor:>7.2f}x")
        print()
        print("the same policy and `when not network in office { require mfa within 1h }` (two CIDRs)")
        print(f"{'case':<18}{'compiled µs':>13}{'hand-written µs':>17}{'ratio':>8}")
        for name, ours, floor in network_rows(work, args.number):
            print(f"{name:<18}{ours:>13.3f}{floor:>17.3f}{ours / floor:>7.2f}x")

        print()
        print(f"{'load + validate a tenant of':<44}{'ours s':>8}{'plain lark tree parse s':>25}")
        tenants = (("demo-shaped policies", DEMO_SHAPES), ("dense 10-requirement policies", [POLICY]))
        for label, shapes in tenants:
            big = work / label.split()[0]
            big.mkdir()
            write_tenant(big, args.policies, shapes=shapes)
            start = time.perf_counter()
            tenant = load_tenant(big)
            elapsed = time.perf_counter() - start
            assert len(tenant.policies) == args.policies
            texts = [p.read_text() for p in sorted(big.glob("*.policy"))]
            start = time.perf_counter()
            for text in texts:
                PLAIN_LARK.parse(text)
            plain = time.perf_counter() - start
            tokens = sum(1 for _ in PLAIN_LARK.lex(texts[0])) / per_file_count(big)
            print(f"{args.policies} {label} (~{tokens:.0f} tokens each){'':<2}{elapsed:>6.2f}{plain:>25.2f}")
        start = time.perf_counter()
        for i in range(0, args.policies, max(1, args.policies // 100)):
            tenant.evaluator(f"c{i}")
        compile_each = (time.perf_counter() - start) / 100 * 1e3
        print(f"compile one policy (lazily, on a client's first decision): {compile_each:.3f} ms")
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
