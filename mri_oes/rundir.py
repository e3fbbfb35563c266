"""Run folders that are complete or absent, and that are the only folders ``--overwrite`` replaces.

A run writes into a hidden staging sibling ``.<name>.partial/`` (checkpoints included) and renames it
onto ``<name>`` only when every file is written, so a reader never sees a half-written result and a
kill never leaves one. The staging folder records the run's *identity* (everything that determines
its result: data digest, operator, method, every hyperparameter, seed, generator, mask digest,
versions) in ``identity.json``, and the run marker :data:`MARKER_FILE` (``.mri-oes-run``) that says
"this folder was written by mri-oes":

* rerun with the same identity → resume from its checkpoints;
* rerun with another identity → refused, naming the differing keys (``--overwrite`` starts afresh);
* an existing complete result → refused unless ``--overwrite``, which replaces the whole folder;
* ``--overwrite`` replaces ONLY a folder carrying the run marker (or an empty one), never a folder
  that is or holds an input of the run, never a user's own folder: everything else is refused;
* an existing EMPTY folder (or a symbolic link to one) is a fine ``--out``; a symbolic link is
  resolved and its target checked; a dangling link, ``.``/``..``, a mount point, a name too long
  for the staging folder are refused in one line;
* a staging path that is a symbolic link or a folder without the marker is never emptied;
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
import os
import shutil
from pathlib import Path
from typing import Iterable, List, Optional

from .errors import RunMismatch, UserError
from .io import clean_stale_temps
from .statefile import canonical, identity_diff

RESULT_FILE = "metrics.json"
IDENTITY_FILE = "identity.json"
#: written in every run folder (and staging folder) by :class:`RunDir`; ``--overwrite`` replaces
#: only a folder that carries it
MARKER_FILE = ".mri-oes-run"
MARKER_TEXT = "mri-oes run folder (replaced by --overwrite; delete the folder to discard it)\n"
#: longest file name a folder may have (the staging name adds ``.`` and ``.partial``)
MAX_NAME_BYTES = 255 - len(".") - len(".partial")
#: paths named on the command line (set by :func:`mri_oes.cli.main`): inputs a run folder must not hold
CLI_INPUTS: List[str] = []


def is_complete(folder) -> bool:
    return (Path(folder) / RESULT_FILE).is_file()


def is_ours(folder) -> bool:
    """Whether ``folder`` is a real folder carrying this toolkit's run marker (a regular file)."""
    folder = Path(folder)
    m = folder / MARKER_FILE
    return folder.is_dir() and not folder.is_symlink() and m.is_file() and not m.is_symlink()


def write_marker(folder) -> None:
    """Mark ``folder`` as written by mri-oes (see :func:`is_ours`)."""
    from .io import atomic_path
    m = Path(folder) / MARKER_FILE
    if m.is_file() and not m.is_symlink():
        return
    if m.is_symlink():
        m.unlink()
    with atomic_path(m, suffix=".tmp") as tmp:
        tmp.write_text(MARKER_TEXT)


def _within(path: Path, folder: Path) -> bool:
    try:
        path.relative_to(folder)
        return True
    except ValueError:
        return False


def held_inputs(folder, inputs: Iterable) -> list:
    """The ``inputs`` that are ``folder`` or lie inside it (paths resolved, links followed)."""
    folder = Path(folder)
    try:
        f = folder.resolve()
    except (OSError, RuntimeError):
        return []
    out = []
    for inp in inputs:
        if inp is None or str(inp) == "":
            continue
        try:
            p = Path(inp).resolve()
        except (OSError, RuntimeError):
            continue
        if _within(p, f):
            out.append(str(inp))
    return out


def check_out_name(out, flag: str = "--out") -> Path:
    """``out`` as the folder a run writes (a symbolic link resolved to its target), or a one-line
    :class:`UserError`: ``.``/``..``/empty names, dangling links, names too long for the staging
    folder, a parent that is a file."""
    raw = str(out)
    p = Path(raw)
    if raw.strip() == "" or p.name in ("", ".", "..") or raw.rstrip("/").endswith(("/.", "/..")):
        raise UserError(f"{flag} {raw!r} does not name a folder of its own (it is '.', '..' or ends in "
                        "one); give a new folder name, e.g. runs/x")
    if p.is_symlink():
        try:
            target = p.resolve(strict=True)
        except (OSError, RuntimeError):
            raise UserError(f"{flag} {p} is a symbolic link to a missing or looping target "
                            f"({os.readlink(p) if p.is_symlink() else '?'}); remove it or give another "
                            f"{flag}") from None
        if target.name in ("", "/"):
            raise UserError(f"{flag} {p} links to {target}, which cannot be a run folder")
        p = target
    if len(os.fsencode(p.name)) > MAX_NAME_BYTES:
        raise UserError(f"{flag}: folder name is {len(os.fsencode(p.name))} bytes; the limit is "
                        f"{MAX_NAME_BYTES} (the staging folder .<name>.partial must fit in 255)")
    for parent in p.parents:
        if parent.exists() or parent.is_symlink():
            if not parent.is_dir():
                raise UserError(f"{flag} {p}: {parent} is not a folder")
            break
    return p


class RunDir:
    def __init__(self, out, identity: Optional[dict] = None, overwrite: bool = False, flag: str = "--out",
                 inputs: Iterable = ()):
        self.given = Path(out)
        self.out = check_out_name(out, flag)
        self.identity = canonical(identity or {})   # JSON-able: compares equal to the stored copy
        self.overwrite = overwrite
        self.flag = flag
        self.work = self.out.parent / f".{self.out.name}.partial"
        given = {os.path.abspath(self.given), os.path.abspath(self.out)}
        self.inputs = [str(i) for i in inputs if i is not None] + \
            [i for i in CLI_INPUTS if os.path.abspath(i) not in given]
        self._lock = None
        self.resumed = False
        self.committed = False

    # ----------------------------------------------------------------------------------------
    def check(self) -> None:
        """Every refusal that needs no lock (call before any expensive work)."""
        if self.out.exists() and not self.out.is_dir():
            raise UserError(f"{self.flag} {self.out} is a file, not a folder")
        if self.out.is_dir() and os.path.ismount(self.out):
            raise UserError(f"{self.flag} {self.out} is a mount point; the run folder is renamed into "
                            "place, which a mount point cannot be: give a folder inside it")
        self._check_staging()
        for folder in (self.out, self.work):
            held = held_inputs(folder, self.inputs) if folder.exists() else []
            if held:
                raise UserError(f"{self.flag} {self.given}: {folder} holds an input of this run ({held[0]}); "
                                f"write the run elsewhere (it is never replaced or deleted)")
        if self.out.is_dir():
            empty = not any(self.out.iterdir())
            if not self.overwrite and not empty:
                if is_complete(self.out):
                    stored = self._identity_of(self.out)
                    diff = identity_diff(stored, self.identity) if stored is not None else []
                    what = (f"a result of another run (differs in: {', '.join(diff[:6])})" if diff else
                            f"a result ({RESULT_FILE})")
                    raise UserError(f"{self.out} already holds {what}; choose another "
                                    f"{self.flag} or pass --overwrite")
                raise UserError(f"{self.out} exists and is not an mri-oes run folder; choose another "
                                f"{self.flag} (an empty or new folder)")
            if self.overwrite and not empty and not is_ours(self.out):
                raise UserError(f"{self.out} is not an mri-oes run folder (no {MARKER_FILE} marker): "
                                f"--overwrite replaces only run folders mri-oes wrote; choose another "
                                f"{self.flag} or empty it yourself")
        old = self._staged_identity()
        if old is not None and old != self.identity and not self.overwrite:
            diff = identity_diff(old, self.identity)
            raise RunMismatch(f"{self.work} holds an unfinished run with other settings (differs in: "
                              f"{', '.join(diff[:8])}{' …' if len(diff) > 8 else ''}); rerun with its "
                              f"settings to resume it, or pass --overwrite to discard it",
                              keys=diff, path=self.work)

    def _check_staging(self) -> None:
        w = self.work
        if w.is_symlink():
            raise UserError(f"{w} is a symbolic link, not an mri-oes staging folder; it is never followed: "
                            "remove the link or choose another --out")
        if w.exists() and not w.is_dir():
            raise UserError(f"{w} exists and is not a folder; remove it or choose another --out")
        if w.is_dir() and not is_ours(w) and not (w / IDENTITY_FILE).is_file() and \
                any(f.name != ".lock" for f in w.iterdir()):
            raise UserError(f"{w} exists and is not an mri-oes staging folder (no {MARKER_FILE}); "
                            "remove it or choose another --out")

    @staticmethod
    def _identity_of(folder):
        f = Path(folder) / IDENTITY_FILE
        if not f.is_file() or f.is_symlink():
            return None
        from .io import read_json
        try:
            return read_json(f, max_bytes=16 << 20, what="identity")
        except UserError:
            return None

    def _staged_identity(self):
        f = self.work / IDENTITY_FILE
        if not f.is_file() or f.is_symlink() or self.work.is_symlink():
            return None
        from .io import read_json
        try:
            return read_json(f, max_bytes=16 << 20, what="staged identity")
        except UserError:
            return {"<unreadable identity.json>": True}

    def __enter__(self) -> "RunDir":
        self.check()
        try:
            self.work.mkdir(parents=True, exist_ok=True)
            fd = os.open(self.work / ".lock", os.O_CREAT | os.O_RDWR | os.O_NOFOLLOW, 0o644)
        except OSError as e:
            raise UserError(f"cannot create the run folder {self.work} for {self.flag} {self.given}: "
                            f"{e.strerror or e}") from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise UserError(f"another mri-oes process is writing {self.out} (lock {self.work / '.lock'}); "
                            "wait for it or choose another --out") from None
        self._lock = fd
        try:
            self._check_staging()   # (again, under the lock)
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
            write_marker(self.work)
            write_json(self.work / IDENTITY_FILE, self.identity)
        except OSError as e:
            self._release()
            raise UserError(f"cannot write the run folder {self.work}: {e.strerror or e}") from None
        except BaseException:
            self._release()
            raise
        return self

    def _wipe_staging(self):
        if self.work.is_symlink() or not self.work.is_dir():
            raise UserError(f"{self.work} is not a staging folder of mri-oes; refusing to empty it")
        for f in self.work.iterdir():
            if f.name == ".lock":
                continue
            shutil.rmtree(f) if f.is_dir() and not f.is_symlink() else f.unlink()

    def commit(self) -> Path:
        """Move the staged run into place (replacing an old result only with --overwrite, and only a
        folder carrying the run marker; an empty folder is replaced in any case)."""
        if not is_complete(self.work):
            raise RuntimeError(f"commit without {RESULT_FILE} in {self.work}")
        write_marker(self.work)
        (self.work / ".lock").unlink(missing_ok=True)   # our flock stays on the open fd
        old = None
        try:
            if self.out.is_symlink():
                raise UserError(f"{self.out} became a symbolic link while this run was writing; its "
                                f"result is kept in {self.work}")
            if self.out.exists():
                empty = self.out.is_dir() and not any(self.out.iterdir())
                if not empty:
                    if not self.overwrite:
                        raise UserError(f"{self.out} appeared while this run was writing; its result is kept "
                                        f"in {self.work}")
                    if not is_ours(self.out) or held_inputs(self.out, self.inputs):
                        raise UserError(f"{self.out} is not an mri-oes run folder or holds an input; it is "
                                        f"not replaced; the result is kept in {self.work}")
                    old = self.out.parent / f".{self.out.name}.old-{os.getpid()}"
                    os.replace(self.out, old)
            os.replace(self.work, self.out)   # onto an empty folder too (rename(2) replaces it)
        except OSError as e:
            if old is not None and not self.out.exists():
                with contextlib.suppress(OSError):
                    os.replace(old, self.out)
            raise UserError(f"cannot move the finished run into {self.out} ({e.strerror or e}); its result "
                            f"is kept in {self.work}") from None
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
