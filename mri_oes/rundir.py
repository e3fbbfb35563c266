"""Run folders that are complete or absent.

A run writes into a hidden staging sibling ``.<name>.partial/`` (checkpoints included) and renames it
onto ``<name>`` only when every file is written, so a reader never sees a half-written result and a
kill never leaves one. The staging folder records the run's *identity* (everything that determines
its result: data digest, operator, method, every hyperparameter, seed, generator, mask digest,
versions) in ``identity.json``:

* rerun with the same identity → resume from its checkpoints;
* rerun with another identity → refused, naming the differing keys (``--overwrite`` starts afresh);
* an existing complete result → refused unless ``--overwrite``, which replaces the whole folder;
* a second process writing the same folder → refused (an ``flock`` held for the run's lifetime);
* hidden temp files of a killed writer are removed on the next start.

Usage::

    with RunDir(out, identity, overwrite=args.overwrite) as rd:
        ... write files under rd.work ...
        rd.commit()          # rename into place (the last step)
"""
from __future__ import annotations

import contextlib
import fcntl
import json
import os
import shutil
from pathlib import Path
from typing import Optional

from .errors import RunMismatch, UserError
from .io import clean_stale_temps
from .statefile import canonical, identity_diff

RESULT_FILE = "metrics.json"
IDENTITY_FILE = "identity.json"


def is_complete(folder) -> bool:
    return (Path(folder) / RESULT_FILE).is_file()


class RunDir:
    def __init__(self, out, identity: Optional[dict] = None, overwrite: bool = False, flag: str = "--out"):
        self.out = Path(out)
        self.identity = canonical(identity or {})   # JSON-able: compares equal to the stored copy
        self.overwrite = overwrite
        self.flag = flag
        self.work = self.out.parent / f".{self.out.name}.partial"
        self._lock = None
        self.resumed = False
        self.committed = False

    # ----------------------------------------------------------------------------------------
    def check(self) -> None:
        """Every refusal that needs no lock (call before any expensive work)."""
        if self.out.exists() and not self.out.is_dir():
            raise UserError(f"{self.flag} {self.out} is a file, not a folder")
        if self.out.is_dir() and not self.overwrite:
            if is_complete(self.out):
                raise UserError(f"{self.out} already holds a result ({RESULT_FILE}); choose another "
                                f"{self.flag} or pass --overwrite")
            if any(self.out.iterdir()):
                raise UserError(f"{self.out} exists and is not an mri-oes run folder; choose another "
                                f"{self.flag} or pass --overwrite to replace it")
        old = self._staged_identity()
        if old is not None and old != self.identity and not self.overwrite:
            diff = identity_diff(old, self.identity)
            raise RunMismatch(f"{self.work} holds an unfinished run with other settings (differs in: "
                              f"{', '.join(diff[:8])}{' …' if len(diff) > 8 else ''}); rerun with its "
                              f"settings to resume it, or pass --overwrite to discard it",
                              keys=diff, path=self.work)

    def _staged_identity(self):
        f = self.work / IDENTITY_FILE
        if not f.is_file():
            return None
        try:
            return json.loads(f.read_text())
        except (OSError, ValueError):
            return {"<unreadable identity.json>": True}

    def __enter__(self) -> "RunDir":
        self.check()
        self.work.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.work / ".lock", os.O_CREAT | os.O_RDWR, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise UserError(f"another mri-oes process is writing {self.out} (lock {self.work / '.lock'}); "
                            "wait for it or choose another --out") from None
        self._lock = fd
        old = self._staged_identity()
        if old is not None and old != self.identity:
            if not self.overwrite:   # raced with another writer between check() and the lock
                self._release()
                self.check()
            self._wipe_staging()
            old = None
        self.resumed = old is not None
        clean_stale_temps(self.work)
        from .io import write_json
        write_json(self.work / IDENTITY_FILE, self.identity)
        return self

    def _wipe_staging(self):
        for f in self.work.iterdir():
            if f.name == ".lock":
                continue
            shutil.rmtree(f) if f.is_dir() and not f.is_symlink() else f.unlink()

    def commit(self) -> Path:
        """Move the staged run into place (replacing an old result only with --overwrite)."""
        if not is_complete(self.work):
            raise RuntimeError(f"commit without {RESULT_FILE} in {self.work}")
        (self.work / ".lock").unlink(missing_ok=True)   # our flock stays on the open fd
        old = None
        if self.out.exists():
            if not self.overwrite:
                raise UserError(f"{self.out} appeared while this run was writing; its result is kept "
                                f"in {self.work}")
            old = self.out.parent / f".{self.out.name}.old-{os.getpid()}"
            os.replace(self.out, old)
        os.replace(self.work, self.out)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
        self.committed = True
        return self.out

    def _release(self):
        if self._lock is not None:
            with contextlib.suppress(OSError):
                fcntl.flock(self._lock, fcntl.LOCK_UN)
                os.close(self._lock)
            self._lock = None

    def __exit__(self, exc_type, exc, tb):
        self._release()
        return False
