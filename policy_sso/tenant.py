"""A tenant directory: ``tenant.yaml``, ``clients.yaml``, ``users.yaml`` and policy files.

Loading parses every file, validates each against its schema and the semantic
rules, runs the cross-file checks, and either returns a complete
:class:`Tenant` or every diagnostic at once. A Tenant is never mutated; a
reload builds a new one and swaps it in whole.
"""

from __future__ import annotations

import fnmatch
import functools
import os
import re
import threading
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from policy_sso.compile import CompiledPolicy, compile_policy, network_tests
from policy_sso.config import (
    DEFAULT_POLICY_FILES,
    Client,
    TenantSettings,
    User,
    client_record,
    tenant_settings,
    user_record,
)
from policy_sso.decision import Decision
from policy_sso.diagnostics import Diagnostic, did_you_mean, sort_diagnostics
from policy_sso.errors import ConfigError, PolicySSOError
from policy_sso.model import Policy, Span
from policy_sso.parse.dsl import parse_dsl
from policy_sso.parse.yaml_form import parse_yaml_policies
from policy_sso.parse.yaml_source import YamlDocument, load_yaml_documents, schema_diagnostics
from policy_sso.request import AuthRequest
from policy_sso.sessions.model import Session
from policy_sso.validate import (
    STANDALONE_SET_RULES,
    Context,
    client_rules,
    tenant_rules,
    user_rules,
    validate_policies,
)

POLICY_SUFFIXES = (".policy", ".policy.yaml", ".policy.yml")
POLICY_PATTERNS = {".policy": "*.policy", ".policy.yaml": "*.policy.yaml", ".policy.yml": "*.policy.yml"}


class UnknownClientError(PolicySSOError):
    """A client_id the tenant does not register (or no policy governs); ``hint`` names a near one."""

    def __init__(self, client_id: str, hint: str = "") -> None:
        self.client_id = client_id
        self.hint = hint
        super().__init__(f"client {client_id!r} is not registered in clients.yaml"
                         + (f" ({hint})" if hint else ""))


def display_path(path: Path) -> str:
    """Return ``path`` relative to the working directory when it is below it."""
    try:
        return os.path.relpath(path) if not os.path.relpath(path).startswith("..") else str(path)
    except ValueError:  # another drive on Windows
        return str(path)


def read_source(path: Path) -> tuple[str | None, list[Diagnostic]]:
    """Return a file's text, or a diagnostic when it cannot be read as UTF-8.

    A leading byte order mark is dropped and line ends are normalized, as text
    mode would; an encoding error is reported where the offending byte is.
    """
    name = display_path(path)
    try:
        data = path.read_bytes()
    except OSError as err:
        return None, [Diagnostic(name, 1, 1, "E_READ", f"cannot read file: {err.strerror}")]
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as err:
        line_start = data.rfind(b"\n", 0, err.start) + 1
        line = data.count(b"\n", 0, err.start) + 1
        col = len(data[line_start:err.start].decode("utf-8", "replace")) + 1
        return None, [Diagnostic(name, line, col, "E_ENCODING",
                                 f"not UTF-8 text: {err.reason} (byte 0x{data[err.start]:02x})")]
    return text.replace("\r\n", "\n").replace("\r", "\n"), []


def parse_policy_text(text: str, file: str) -> tuple[list[Policy], list[Diagnostic]]:
    """Return the policies in one file's text, by its form (YAML by suffix, else DSL)."""
    if file.endswith((".yaml", ".yml")):
        return parse_yaml_policies(text, file)
    return parse_dsl(text, file)


def parse_policy_file(path: Path) -> tuple[list[Policy], list[Diagnostic]]:
    """Return the policies in a file and every diagnostic of its syntax and schema.

    A file with no policy block is an error: a policy file caught empty
    (truncated before it is written) must never load as "no requirements".
    """
    text, errors = read_source(path)
    if text is None:
        return [], errors
    name = display_path(path)
    policies, errors = parse_policy_text(text, name)
    if not policies and not errors:
        what = "is empty" if not text.strip() else "holds no policy block"
        errors = [Diagnostic(name, 1, 1, "E_EMPTY_POLICY_FILE", f"this policy file {what}",
                             "write a policy block, or delete the file")]
    return policies, errors


def _spans(doc: YamlDocument) -> dict[str, Span]:
    spans = {"": Span(doc.file, 1, 1)}
    for path in doc.positions:
        spans[".".join(str(p) for p in path)] = Span(doc.file, *doc.node_span(path))
    for path in doc.key_positions:  # keys win: point at "lifetime:", underline "lifetime: 14d"
        spans[".".join(str(p) for p in path)] = Span(doc.file, *doc.span(path))
    return spans


def _load_config(path: Path, schema: str) -> tuple[YamlDocument | None, list[Diagnostic]]:
    text, errors = read_source(path)
    if text is None:
        return None, errors
    docs, errors = load_yaml_documents(text, display_path(path))
    if errors:
        return None, errors
    if len(docs) != 1:
        return None, [Diagnostic(display_path(path), 1, 1, "E_YAML", "expected exactly one YAML document")]
    schema_errors = list(schema_diagnostics(docs[0], schema))
    return (None if schema_errors else docs[0]), schema_errors


@dataclass
class Tenant:
    """A loaded, validated tenant. Compiled evaluators are built once per client, on first use."""

    directory: Path
    settings: TenantSettings
    clients: dict[str, Client]
    users: dict[str, User]
    policies: dict[str, Policy]
    policy_files: tuple[Path, ...] = ()
    _policy_of: dict[str, str] = field(default_factory=dict, repr=False)
    _compiled: dict[str, CompiledPolicy] = field(default_factory=dict, repr=False)
    _token_compiled: dict[str, CompiledPolicy] = field(default_factory=dict, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def __post_init__(self) -> None:
        for policy in self.policies.values():
            for client in policy.clients:
                self._policy_of[client] = policy.name
        for client_id, client in self.clients.items():  # an explicit ``policy:`` in clients.yaml
            named = client.governing_policy_name(self.settings)
            if named is not None and named in self.policies:
                self._policy_of.setdefault(client_id, named)
        self.users_by_name = {u.username: u for u in self.users.values()}
        # what a login_hint may name besides a subject or a username: an email address or a username
        # in any case (OIDC Core §3.1.2.1 gives an email as the example); a key two users share names neither
        hint_keys: dict[str, list[User]] = {}
        for user in self.users.values():
            email = user.claims.get("email")
            for key in {user.username.casefold(), *([email.casefold()] if isinstance(email, str) else [])}:
                hint_keys.setdefault(key, []).append(user)
        self._hinted = {key: users[0] for key, users in hint_keys.items() if len(users) == 1}
        # whether any policy has a ``when network in`` test: only then is a request's address parsed
        self.tests_networks = any(network_tests(when.condition) for policy in self.policies.values()
                                  for when in policy.whens)

    def governs(self, client_id: str) -> bool:
        """Return whether ``client_id`` is a registered client with a governing policy."""
        return client_id in self.clients and client_id in self._policy_of

    def client_hint(self, client_id: str) -> str:
        """Return ``did you mean …?`` for an unknown client_id, else the registered ones (for errors)."""
        return did_you_mean(client_id, self.clients) or (
            "registered clients: " + (", ".join(sorted(self.clients)) or "none"))

    def policy_for(self, client_id: str) -> Policy:
        """Return the policy governing a registered client; raise UnknownClientError for any other id.

        No client is ever placed on a default: a validated tenant governs every
        registered client explicitly, and an unknown id is refused (SPEC §7).
        """
        name = self._policy_of.get(client_id)
        if name is None or client_id not in self.clients:
            raise UnknownClientError(client_id, self.client_hint(client_id))
        return self.policies[name]

    def evaluator(self, client_id: str) -> CompiledPolicy:
        """Return the compiled evaluator for a client (compiled once, then cached)."""
        compiled = self._compiled.get(client_id)
        if compiled is None:
            with self._lock:
                compiled = self._compiled.get(client_id)
                if compiled is None:
                    compiled = compile_policy(self.policy_for(client_id), self.settings,
                                              self.clients.get(client_id))
                    self._compiled[client_id] = compiled
        return compiled

    def token_evaluator(self, client_id: str) -> CompiledPolicy:
        """Return the client's evaluator for access tokens (RFC 9470; compiled once, then cached).

        The policy's checks that apply to a token's authentication context
        (:data:`policy_sso.oidc.step_up.TOKEN_CHECKS`), no session or consent checks.
        """
        compiled = self._token_compiled.get(client_id)
        if compiled is None:
            from policy_sso.oidc.step_up import applies_to_token  # the oidc layer sits above the tenant

            with self._lock:
                compiled = self._token_compiled.get(client_id)
                if compiled is None:
                    compiled = compile_policy(self.policy_for(client_id), self.settings,
                                              self.clients.get(client_id), applies=applies_to_token)
                    self._token_compiled[client_id] = compiled
        return compiled

    def decide(self, request: AuthRequest, session: Session | None, now: int) -> Decision:
        """Return the decision of the request's client's policy."""
        return self.evaluator(request.client_id).decide(request, session, now)

    def resolve_user(self, hint: str | None) -> User | None:
        """Return the user a login hint names: subject or username, else email or username in any case."""
        if not hint:
            return None
        return self.users.get(hint) or self.users_by_name.get(hint) or self._hinted.get(hint.casefold())


def _glob(directory: Path, settings: TenantSettings | None,
          written: tuple[str, ...] | None = None) -> tuple[list[Path], list[Diagnostic]]:
    """Return the files ``policy_files`` matches, and a diagnostic per pattern that leaves the tenant
    (``written``: the patterns of a tenant.yaml that did not load)."""
    patterns = settings.policy_files if settings else written or DEFAULT_POLICY_FILES
    found: dict[Path, None] = {}
    problems: list[Diagnostic] = []
    root = directory.resolve()
    inside: dict[Path, bool] = {directory: True}  # per parent directory: resolved only once

    def escapes(path: Path) -> bool:
        if path.parent not in inside:
            inside[path.parent] = path.parent.resolve().is_relative_to(root)
        # only a link (or a directory that links out) can leave: no resolve() per ordinary file
        return not inside[path.parent] or (path.is_symlink() and not path.resolve().is_relative_to(root))
    hint = 'policy_files are glob patterns relative to the tenant directory, e.g. "*.policy"'
    for i, pattern in enumerate(patterns):
        span = (settings.span(f"policy_files.{i}") if settings
                else Span(display_path(directory / "tenant.yaml"), 1, 1))
        if os.path.isabs(pattern) or pattern.startswith("~") or ".." in Path(pattern).parts:
            message = f"policy_files pattern {pattern!r} reaches outside the tenant directory"
            problems.append(Diagnostic(span.file, span.line, span.col, "E_POLICY_FILES_PATH", message, hint))
            continue
        if not Path(pattern).parts:  # "", ".", "./": names no file (and pathlib's glob fails on them)
            problems.append(Diagnostic(span.file, span.line, span.col, "E_POLICY_FILES_PATH",
                                       f"policy_files pattern {pattern!r} names no file", hint))
            continue
        try:
            matches = sorted(directory.glob(pattern))
        # pathlib's refusal of "**x" ('**' not a whole component) is a ValueError; OSError comes from the
        # file system while matching (non-relative patterns, which pathlib would not take, are refused above)
        except (ValueError, OSError) as err:
            problems.append(Diagnostic(span.file, span.line, span.col, "E_POLICY_FILES_PATH",
                                       f"policy_files pattern {pattern!r} is not a usable glob: {err}", hint))
            continue
        for path in matches:
            if not path.is_file():  # a directory holds no policy; a broken link a pattern names is an error
                problems += [] if path.is_dir() or not path.is_symlink() else [_broken_link(path)]
                continue
            if escapes(path):  # a symbolic link out of the tenant
                problems.append(Diagnostic(display_path(path), 1, 1, "E_POLICY_FILES_PATH",
                                           f"{display_path(path)} links outside the tenant directory", hint))
                continue
            found[path] = None
    return list(found), problems


def _broken_link(path: Path) -> Diagnostic:
    """Return the error for a symbolic link named like a policy file that leads to no file (gone, a
    loop, a directory): what it was meant to hold cannot be read, and is not passed over (SPEC §7)."""
    try:
        why = f"it is a symbolic link to {os.readlink(path)}, which is not a file"
    except OSError:
        why = "it is a symbolic link to no file"
    return Diagnostic(display_path(path), 1, 1, "E_READ", f"cannot read file: {why}",
                      "point the link at the file, or delete it")


def _looks_like_policy(name: str) -> bool:
    """Return whether a name in a tenant directory may hold a policy: a policy file's name, or YAML
    that is neither a config file nor a policy test (whether it declares a policy is read next)."""
    return name.endswith((*POLICY_SUFFIXES, ".yaml", ".yml")) and name not in _CONFIG_SCHEMAS \
        and not name.endswith(TEST_SUFFIXES)


def _unmatched_policy_files(directory: Path, loaded: list[Path],
                            settings: TenantSettings | None) -> Iterator[Diagnostic]:
    """Yield an error for each file in the tenant directory that looks like a policy but is not loaded.

    A file looks like a policy when its name says so (``*.policy``, ``*.policy.yaml``,
    ``*.policy.yml``), or when it is other YAML that declares a policy (:func:`declares_policy`:
    ``extra.yaml`` with ``policy: p2``, the YAML form as SPEC §1 names it). A broken link under such
    a name is an error as well, and a link out of the tenant is named but never read.
    """
    if settings is None:
        return
    known = set(loaded)  # glob and iterdir both give DIRECTORY/NAME: no need to resolve
    try:
        entries = sorted(directory.iterdir())
    except OSError:
        return
    root = directory.resolve()
    written = ", ".join(f'"{p}"' for p in settings.policy_files)
    for path in entries:
        if not _looks_like_policy(path.name) or path in known or path.is_dir():
            continue
        if not path.is_file():  # a broken link is an error; a pipe or a device is not read (it may block)
            if path.is_symlink():
                yield _broken_link(path)
            continue
        if path.is_symlink() and not path.resolve().is_relative_to(root):
            yield Diagnostic(display_path(path), 1, 1, "E_READ",
                             f"{display_path(path)} links outside the tenant directory: not read",
                             "copy the file into the tenant directory, or delete the link")
            continue
        suffix = next((s for s in POLICY_SUFFIXES if path.name.endswith(s)), None)
        if suffix is None and not declares_policy(path):
            continue  # YAML that is no policy (a CI workflow, a message catalogue)
        hint = (f'add "{POLICY_PATTERNS[suffix]}" to policy_files in tenant.yaml' if suffix
                else _rename_hint(path.name, settings.policy_files))
        yield Diagnostic(display_path(path), 1, 1, "E_POLICY_NOT_LOADED",
                         f"this policy file is not loaded: policy_files [{written}] in tenant.yaml "
                         "does not match it",
                         f"{hint}, or move the file out of the tenant directory")


def _rename_hint(name: str, patterns: tuple[str, ...]) -> str:
    """Return how a YAML policy named ``NAME.yaml`` gets loaded: as ``NAME.policy.yaml``, matched by
    policy_files (a pattern ``*.yaml`` would take tenant.yaml and clients.yaml for policies too)."""
    stem, _, ext = name.rpartition(".")
    renamed, suffix = f"{stem}.policy.{ext}", f".policy.{ext}"
    if any(fnmatch.fnmatchcase(renamed, pattern) for pattern in patterns):
        return f'rename it "{renamed}"'
    return f'rename it "{renamed}" and add "{POLICY_PATTERNS[suffix]}" to policy_files in tenant.yaml'


@dataclass(frozen=True)
class _TenantCheck:
    """What checking a tenant directory found, kept for checking its files one by one."""

    tenant: Tenant | None  # None when anything is in error
    diagnostics: list[Diagnostic]
    files: tuple[Path, ...]  # the policy files the tenant's globs include
    context: Context  # the settings and clients as far as they loaded
    # a mistake with several places (a client two policies claim), reported once: how it is told at
    # each other place, for checking one of those files alone
    other_sides: dict[Diagnostic, list[Diagnostic]] = field(default_factory=dict)

    @functools.cached_property
    def policy_files(self) -> frozenset[Path]:
        """The policy files, resolved (only when single files are checked: loading skips it)."""
        return frozenset(p.resolve() for p in self.files)


def check_tenant(directory: str | Path) -> tuple[Tenant | None, list[Diagnostic]]:
    """Return the tenant in ``directory`` and every diagnostic (the tenant is None on errors)."""
    check = _check_tenant(Path(directory))
    return check.tenant, check.diagnostics


_POLICY_NAME_RES = (re.compile(r'\bpolicy\s+"((?:[^"\\\n]|\\.)*)"'),  # DSL: policy "NAME" {
                    re.compile(r"^policy\s*:\s*[\"']?([^\"'#\n]*?)[\"']?\s*(?:#.*)?$", re.MULTILINE))  # YAML


def _policy_names_in(path: Path) -> frozenset[str]:
    """Return the names a policy file that did not load seems to define (read from its text, not parsed)."""
    if path.is_symlink() or not path.is_file():  # a pipe would block; a link may leave the tenant: not read
        return frozenset()
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return frozenset()
    return frozenset(m.group(1) for pattern in _POLICY_NAME_RES for m in pattern.finditer(text))


def _written_policy_files(path: Path) -> tuple[str, ...] | None:
    """Return the policy_files patterns of a tenant.yaml that failed to load, when they can still be read."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError):
        return None
    # the loader with its budget for aliases: merge keys nested a few dozen deep would otherwise
    # build gigabytes from a page of YAML (the file is broken already; it may be hostile too)
    documents, _ = load_yaml_documents(text, display_path(path))
    data = documents[0].data if documents else None
    if not isinstance(data, dict):
        return None
    patterns = data.get("policy_files", DEFAULT_POLICY_FILES)
    if isinstance(patterns, list | tuple) and all(isinstance(p, str) for p in patterns):
        return tuple(patterns)
    return None


def _check_tenant(directory: Path) -> _TenantCheck:
    diagnostics: list[Diagnostic] = []
    tenant_doc, errs = _load_config(directory / "tenant.yaml", "tenant")
    diagnostics += errs
    settings = tenant_settings(tenant_doc.data, _spans(tenant_doc)) if tenant_doc else None
    if settings:
        diagnostics += tenant_rules(settings)
    # tenant.yaml did not load: the other files are still checked, and its policy_files still
    # chooses the policy files when it can be read (else: which files are policies is unknown)
    patterns = None if settings else _written_policy_files(directory / "tenant.yaml")

    clients: dict[str, Client] | None = None
    clients_doc, errs = _load_config(directory / "clients.yaml", "clients")
    diagnostics += errs
    if clients_doc:
        records = [client_record(c, Span(clients_doc.file,
                                         *clients_doc.node_span(("clients", i), ("clients", i, "client_id"))),
                                 Span(clients_doc.file, *clients_doc.node_span(("clients", i, "policy"))))
                   for i, c in enumerate(clients_doc.data["clients"])]
        diagnostics += client_rules(records)
        clients = {c.client_id: c for c in records}

    users: dict[str, User] = {}
    users_doc, errs = _load_config(directory / "users.yaml", "users")
    diagnostics += errs
    if users_doc:
        records_u = [user_record(u, Span(users_doc.file,
                                         *users_doc.node_span(("users", i), ("users", i, "sub"))),
                                 Span(users_doc.file, *users_doc.span(("users", i, "totp_secret"))))
                     for i, u in enumerate(users_doc.data["users"])]
        diagnostics += user_rules(records_u, directory)
        users = {u.sub: u for u in records_u}

    files, errs = _glob(directory, settings, patterns)
    refused = {d.file for d in errs}  # a match refused (a link out of the tenant) is reported once
    errs += [d for d in _unmatched_policy_files(directory, files, settings) if d.file not in refused]
    diagnostics += errs
    # the names policy files that did not load may define: rules across files stay quiet about them
    unloaded: frozenset[str] | None = frozenset() if settings or patterns is not None else None
    tenant_file = display_path(directory / "tenant.yaml")
    policies: list[Policy] = []
    for path in files:
        found, file_errs = parse_policy_file(path)
        policies += found
        errs += file_errs
        diagnostics += file_errs
    for d in errs:
        if unloaded is None or d.severity != "error":
            continue
        if d.file == tenant_file:  # a policy_files pattern refused: any file may be missing
            unloaded = None
        else:  # "" marks that a file did not load even when no name can be read from it
            unloaded |= _policy_names_in(Path(d.file)) | {""}
    ctx = Context(settings, clients, directory, settings_failed=settings is None, unloaded_policies=unloaded)
    other_sides: dict[Diagnostic, list[Diagnostic]] = {}
    diagnostics += validate_policies(policies, ctx, other_sides=other_sides)
    # a policy file the globs leave out is still checked, on its own in the tenant's context (as a
    # YAML twin below it): its own errors come with E_POLICY_NOT_LOADED, not after adding the glob
    for path in sorted({Path(d.file) for d in errs if d.code == "E_POLICY_NOT_LOADED"}):
        found, file_errs = parse_policy_file(path)
        diagnostics += file_errs
        diagnostics += validate_policies(found, ctx, STANDALONE_SET_RULES)

    diagnostics = sort_diagnostics(diagnostics)
    tenant = None
    if not any(d.severity == "error" for d in diagnostics) and settings is not None and clients is not None:
        tenant = Tenant(directory, settings, clients, users, {p.name: p for p in policies}, tuple(files))
    return _TenantCheck(tenant, diagnostics, tuple(files), ctx, other_sides)


def load_tenant(directory: str | Path) -> Tenant:
    """Return the tenant in ``directory``; raise ConfigError with every diagnostic on errors."""
    tenant, diagnostics = check_tenant(directory)
    if tenant is None:
        raise ConfigError([d for d in diagnostics if d.severity == "error"] or diagnostics)
    return tenant


def find_tenant_dir(path: Path) -> Path | None:
    """Return the nearest directory at or above ``path`` that holds a tenant.yaml."""
    for candidate in [path if path.is_dir() else path.parent, *path.resolve().parents]:
        if (candidate / "tenant.yaml").is_file():
            return candidate
    return None


def check_paths(paths: Iterable[str | Path]) -> list[Diagnostic]:
    """Return every diagnostic for the given tenant directories and policy files (see check_paths_tenants)."""
    return check_paths_tenants(paths)[0]


def check_paths_tenants(paths: Iterable[str | Path]) -> tuple[list[Diagnostic], dict[Path, Tenant | None]]:
    """Return every diagnostic for the given tenant directories and policy files, and the tenants
    checked on the way (by resolved directory; None for one that does not validate).

    A directory holding ``tenant.yaml`` is loaded as a tenant; policy files
    below it that its globs do not include (e.g. YAML twins) are checked on
    their own in the tenant's context. A policy file of a tenant is checked
    as part of it (what ``pre-commit`` passes, one file at a time): its lines
    among the tenant's diagnostics, the rules across files included. Its
    tenant.yaml, clients.yaml or users.yaml gets every diagnostic of the
    tenant (they define the names the rest refers to). A diagnostic is
    returned once however many of a tenant's files are given. Other files
    are checked on their own.
    """
    diagnostics: list[Diagnostic] = []
    tenants: dict[Path, _TenantCheck] = {}
    reported: set[Diagnostic] = set()  # a tenant's findings shown so far: a mistake of two files once
    for raw in paths:
        path = Path(raw)
        if not path.exists():
            diagnostics.append(Diagnostic(str(raw), 1, 1, "E_READ", "no such file or directory"))
            continue
        if path.is_dir() and (path / "tenant.yaml").is_file():
            check = tenants[path.resolve()] = _check_tenant(path)
            diagnostics += [d for d in check.diagnostics if d not in reported]
            reported.update(check.diagnostics)
            extra, broken, outside = _below_tenant(path, check)
            diagnostics += _not_read(outside, path)
            # (a broken link a pattern names is among the tenant's findings already)
            diagnostics += [d for d in map(_broken_link, broken) if d not in reported]
            diagnostics += _check_files(extra, tenants, reported)
        elif path.is_dir():
            taken, _, outside = files_to_validate(path, lambda p: _loaded_by_tenant(p, tenants))
            diagnostics += _not_read(outside, path) + _check_files(taken, tenants, reported)
        else:
            diagnostics += _check_files([path], tenants, reported)
    return sort_diagnostics(diagnostics), {home: check.tenant for home, check in tenants.items()}


_CONFIG_SCHEMAS = {"tenant.yaml": "tenant", "clients.yaml": "clients", "users.yaml": "users"}
TEST_SUFFIXES = (".test.yaml", ".test.yml")
_POLICY_KEYS = ("policy", "policies")


def _below_tenant(directory: Path, check: _TenantCheck) -> tuple[list[Path], list[Path], list[Path]]:
    """Return the policy files in the subdirectories of a tenant that its globs leave out (the YAML
    twins; checked on their own in its context), the broken links among them, and the links out of
    the tenant (named, never read; see files_to_validate).

    A policy file is one by name, or other YAML that declares a policy (:func:`declares_policy`), as
    in the tenant directory itself; a tenant's config files below it and policy tests are not.
    """
    taken: list[Path] = []
    broken: list[Path] = []
    outside: list[Path] = []
    root = directory.resolve()
    for path in sorted(directory.rglob("*")):
        if path.parent == directory or not _looks_like_policy(path.name) or path.is_dir():
            continue
        if not path.is_file():
            if path.is_symlink():  # a pipe or a device is not read (see _unmatched_policy_files)
                broken.append(path)
        elif path.is_symlink() and not path.resolve().is_relative_to(root):
            outside.append(path)
        elif path.resolve() not in check.policy_files and (
                path.name.endswith(POLICY_SUFFIXES) or declares_policy(path)):
            taken.append(path)
    return taken, broken, outside


def _loaded_by_tenant(path: Path, tenants: dict[Path, _TenantCheck]) -> bool:
    """Return whether the tenant ``path`` lies in loads it as a policy file (its policy_files match it)."""
    home = find_tenant_dir(path)
    if home is None:
        return False
    home = home.resolve()
    if home not in tenants:
        tenants[home] = _check_tenant(home)
    return path.resolve() in tenants[home].policy_files


def loaded_by_a_tenant(path: Path) -> bool:
    """Return whether the tenant ``path`` lies in loads it as a policy file."""
    return _loaded_by_tenant(path, {})


def files_to_validate(directory: Path, loaded: Callable[[Path], bool] | None = None,
                      ) -> tuple[list[Path], list[Path], list[Path]]:
    """Return the files below a directory (not a tenant's) that ``validate`` checks, the policy
    test files it leaves to ``policy-sso test``, and the links out of the directory it does not read.

    Taken: policy files by name (``*.policy``, ``*.policy.yaml``, ``*.policy.yml``), tenant.yaml,
    clients.yaml and users.yaml, any YAML file a tenant loads (``loaded``: its policy_files match
    it) and any other YAML file that declares a policy (see :func:`declares_policy`): a misspelt
    policy is reported, a CI workflow or a message catalogue is not a policy. A link to a file
    outside the directory is never read, as a tenant never loads one: CI validates contributors'
    trees, and a link to ``/proc/self/environ`` would print the job's secrets in an error's line.
    """
    taken: list[Path] = []
    tests: list[Path] = []
    outside: list[Path] = []
    root = directory.resolve()
    for path in sorted(directory.rglob("*")):
        name = path.name
        if not name.endswith((*POLICY_SUFFIXES, ".yaml", ".yml")) or not path.is_file():
            continue
        if path.is_symlink() and not path.resolve().is_relative_to(root):
            outside.append(path)
        elif name.endswith(TEST_SUFFIXES):
            tests.append(path)
        elif (name.endswith(POLICY_SUFFIXES) or name in _CONFIG_SCHEMAS or declares_policy(path)
              or (loaded is not None and loaded(path))):
            taken.append(path)
    return taken, tests, outside


def _not_read(links: list[Path], directory: Path) -> list[Diagnostic]:
    """Return an error for each link out of ``directory``: named, not read (see files_to_validate)."""
    return [Diagnostic(display_path(link), 1, 1, "E_READ",
                       f"{display_path(link)} links outside {display_path(directory)}: not read")
            for link in links]


def declares_policy(path: Path) -> bool:
    """Return whether a YAML file is meant as a policy file: a document of it has a top-level key
    ``policy`` or ``policies``, or one near them (``polcy:``); or it is not readable YAML at all,
    which cannot be told apart from a broken policy file (fail closed: it is reported)."""
    try:  # composed, not constructed: only the top-level keys are wanted, and no value can fail
        documents = list(yaml.compose_all(path.read_text(encoding="utf-8"), Loader=yaml.SafeLoader))
    except (OSError, UnicodeDecodeError, yaml.YAMLError, RecursionError):
        return True
    keys = [key.value for doc in documents if isinstance(doc, yaml.MappingNode)
            for key, _ in doc.value if isinstance(key, yaml.ScalarNode)]
    return any(key in _POLICY_KEYS or did_you_mean(key, _POLICY_KEYS) for key in keys)


def _own_lines(check: _TenantCheck, shown: str, reported: set[Diagnostic]) -> Iterator[Diagnostic]:
    """Yield the findings of a tenant's check that are at a place in file ``shown``, each not yet in
    ``reported``: a mistake with several places is told from this file's place when it is reported
    at another file's (a claim here of a client another policy claims too)."""
    for d in check.diagnostics:
        told = d if d.file == shown else next(
            (side for side in check.other_sides.get(d, ()) if side.file == shown), None)
        if told is not None and d not in reported:
            reported.add(d)
            yield told


def _not_yet_reported(check: _TenantCheck, reported: set[Diagnostic]) -> Iterator[Diagnostic]:
    """Yield every finding of a tenant's check not yet in ``reported`` (adding each to it)."""
    for d in check.diagnostics:
        if d not in reported:
            reported.add(d)
            yield d


def _check_files(files: list[Path], tenants: dict[Path, _TenantCheck],
                 reported: set[Diagnostic] | None = None) -> list[Diagnostic]:
    """Return the diagnostics of single files; ``tenants`` caches the tenants they belong to,
    ``reported`` the findings of those tenants already returned (each is returned once)."""
    reported = set() if reported is None else reported
    out: list[Diagnostic] = []
    for path in files:
        home = find_tenant_dir(path)
        check = None
        if home is not None:
            home = home.resolve()
            if home not in tenants:
                tenants[home] = _check_tenant(home)
            check = tenants[home]
            resolved = path.resolve()
            if path.name in _CONFIG_SCHEMAS and resolved.parent == home:
                # tenant.yaml, clients.yaml, users.yaml: they define the names the rest of the tenant
                # refers to, so a change here can break any file of it (a client deleted that a policy
                # names, an acr level renamed): every finding of the tenant, at its own place
                out += _not_yet_reported(check, reported)
                continue
            # loaded, or must be: a file directly in the tenant that looks like a policy, by its name or
            # as YAML that declares one (what _unmatched_policy_files reports when the globs miss it)
            own = resolved.parent == home and (path.name.endswith(POLICY_SUFFIXES) or (
                _looks_like_policy(path.name) and declares_policy(path)))
            if resolved in check.policy_files or own:
                # One of the tenant's policy files: exactly its lines of the tenant's check, including a
                # mistake whose other half lives elsewhere (a client claimed here and in another file)
                out += _own_lines(check, display_path(path), reported)
                continue
        if path.name in _CONFIG_SCHEMAS:
            out += _load_config(path, _CONFIG_SCHEMAS[path.name])[1]
            continue
        # not one of a tenant's files (e.g. a YAML twin): on its own, in the tenant's context if any
        ctx = check.context if check else Context(base_dir=path.parent)  # key paths: relative to the file
        policies, errs = parse_policy_file(path)
        out += errs
        out += validate_policies(policies, ctx, STANDALONE_SET_RULES)
    return out
