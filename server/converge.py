"""Instances on one store converge on the policies one of them reloaded (SPEC §7).

A reload (SIGHUP, ``POST /admin/v1/policies/reload``, a password set through
the admin API) reaches one instance; the others read the same tenant directory
but would keep running what they loaded until each was told. So every applied
reload adds one to a count in the store, and every process looks at the count
every few seconds: when it moved, another instance reloaded, and this one
re-reads its own files too, if they changed since it last loaded them (a set
with an error is refused there as anywhere, and the running one stays). A
reload started by the count is not counted again, and the workers of one
``serve --workers`` (which the supervisor's SIGHUP has reloaded already) find
their files unchanged, so nothing is reloaded twice.

The count is the store's fixed-window counter (``Store.hit``) in a window that
never closes: every store shares it already (Redis, PostgreSQL, one SQLite
file), and reading it is adding nothing. A count that went back (a Redis that
lost its data) differs too: the instances reload once, which is harmless.
"""

from __future__ import annotations

import hashlib
import logging
import os
import threading
from pathlib import Path

from policy_sso.errors import StoreUnavailable
from policy_sso.reload import ReloadResult, TenantHolder
from policy_sso.sessions.store import Store

log = logging.getLogger("policy_sso.reload")

POLL_SECONDS = 2.0  # how long another instance may run the old policies after a reload here
COUNTER = "policy-reloads"  # the store counter's key (rate-limit keys name a limit and a subject)
FOREVER = 10**10  # a counter window that does not close (seconds; the year 2286)


class ReloadFollower:
    """Counts this process's applied reloads in the store and follows those of the others."""

    def __init__(self, store: Store, holder: TenantHolder, poll_seconds: float = POLL_SECONDS) -> None:
        self.store = store
        self.holder = holder
        self.poll_seconds = poll_seconds
        self._seen: int | None = None  # the count as this process last knew it
        self._loaded = fingerprint(holder.directory)  # the files as this process last loaded them
        self._following = threading.local()  # set while a reload the count started runs
        holder.listeners.append(self._reloaded)

    def _count(self, amount: int) -> int:
        return self.store.hit(COUNTER, FOREVER, 0, amount)[0]

    def _reloaded(self, result: ReloadResult) -> None:
        """A reload here applied: tell the others (unless the count is what started it)."""
        if not result.applied:
            return
        self._loaded = fingerprint(self.holder.directory)
        if getattr(self._following, "active", False):
            return
        try:
            self._seen = self._count(1)
        except StoreUnavailable as fault:
            log.warning("other instances were not told of this reload (%s): reload them by hand",
                        fault.reason)

    def follow(self, stop: threading.Event) -> None:
        """Reload when the count moves, until ``stop`` is set (a server's daemon thread)."""
        while True:
            try:
                count = self._count(0)
            except StoreUnavailable:  # looked at again next round
                count = None
            if count is not None:
                if self._seen is not None and count != self._seen \
                        and fingerprint(self.holder.directory) != self._loaded:
                    log.info("another instance reloaded its policies: reloading them here")
                    self._following.active = True
                    try:
                        self.holder.reload(tell_others=False)
                    finally:
                        self._following.active = False
                self._seen = count
            if stop.wait(self.poll_seconds):
                return

    def start(self, stop: threading.Event) -> threading.Thread:
        """Follow in a daemon thread; return it."""
        thread = threading.Thread(target=self.follow, args=(stop,), name="policy-sso-reloads", daemon=True)
        thread.start()
        return thread


def fingerprint(directory: Path) -> str:
    """Return a digest of every file's path, size and modification time under ``directory``.

    What a reload reads lives there (tenant.yaml, clients, users, policies, the secret files they
    name); a file changed since a load changes the digest. Unreadable entries count as they are.
    """
    digest = hashlib.sha256()
    for root, dirs, files in os.walk(directory):
        dirs.sort()
        for name in sorted(files):
            path = os.path.join(root, name)
            try:
                stat = os.stat(path)
                digest.update(f"{path}\0{stat.st_size}\0{stat.st_mtime_ns}\n".encode())
            except OSError:
                digest.update(f"{path}\0gone\n".encode())
    return digest.hexdigest()
