"""One run per output folder: an exclusive lock file, ``run.lock``, holding the owner's PID and host.

``meta_train`` holds ``RunLock(out)`` for the whole run (only rank 0 of a distributed job), so a second
run started into the same folder refuses at once instead of interleaving ``metrics.jsonl`` and
overwriting the checkpoints::

    with RunLock("runs/demo"):        # RunLocked if a live process holds it
        ...                            # train; the lock file goes on exit, also on errors and Ctrl-C

A lock left by a process that died (``kill -9``, a power cut) is stale: its PID no longer runs on
this host, and the next run takes it over (and says so). A lock from another host cannot be
checked from here: it refuses, naming the host, and the message says to delete the file if that
run is gone.
"""
from __future__ import annotations

import errno
import os
import socket
from pathlib import Path

from mllib.files import naming, pid_alive

LOCK_NAME = "run.lock"


class RunLocked(RuntimeError):
    """The output folder is in use by another run (the message names the folder, PID and lock file)."""


class RunLock:
    """Exclusive use of ``folder`` (which must exist) while the ``with`` block runs.

    ``taken_over``: the PID of a dead owner whose stale lock was replaced, else ``None``.
    """

    def __init__(self, folder: str | os.PathLike):
        self.folder = Path(folder)
        self.path = self.folder / LOCK_NAME
        self.taken_over: int | None = None
        self._held = False

    def acquire(self) -> "RunLock":
        host = socket.gethostname()
        for _ in range(3):
            try:
                with naming(self.path):
                    fd = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
            except FileExistsError:
                self._clear_stale(host)
                continue
            with os.fdopen(fd, "w") as handle:
                handle.write(f"{os.getpid()} {host}\n")
            self._held = True
            return self
        raise RunLocked(f"{self.folder} is in use: could not take its lock file {self.path}")

    def release(self) -> None:
        if self._held:
            self._held = False
            try:
                self.path.unlink()
            except FileNotFoundError:
                pass

    def __enter__(self) -> "RunLock":
        return self.acquire()

    def __exit__(self, *exc) -> None:
        self.release()

    def _clear_stale(self, host: str) -> None:
        """Remove the lock file if its owner is dead; raise ``RunLocked`` if it may be alive."""
        try:
            fields = self.path.read_text().split()
        except FileNotFoundError:
            return  # released meanwhile: try again
        pid = int(fields[0]) if fields and fields[0].isdigit() else None
        owner_host = fields[1] if len(fields) > 1 else host
        if pid is None:
            raise RunLocked(f"{self.folder} has an unreadable lock file {self.path}; delete it if no run "
                            f"is using the folder")
        if owner_host != host:
            raise RunLocked(f"{self.folder} is in use by a training run on host {owner_host} (PID {pid}); "
                            f"wait for it or choose another out folder (delete {self.path} if that run is gone)")
        if pid_alive(pid):
            raise RunLocked(f"{self.folder} is in use by another training run (PID {pid}); wait for it to "
                            f"finish or choose another out folder (lock file {self.path})")
        # stale: rename it away first, so two runs that both found it stale cannot both take it
        stale = self.path.with_name(f".{LOCK_NAME}.stale-{os.getpid()}")
        try:
            os.rename(self.path, stale)
        except OSError as err:
            if err.errno != errno.ENOENT:
                raise
            return
        if stale.read_text().split() != fields:  # another run replaced the stale lock meanwhile: put it back
            try:
                os.link(stale, self.path)
            except FileExistsError:
                pass
        else:
            self.taken_over = pid
        stale.unlink()
