"""Run independent tasks (one per MRI slice) on Ray — local processes by default, an existing cluster
with ``ray_address`` — or serially in this process when Ray is not installed or one worker is asked.

No scheduler of our own: Ray places the tasks (``num_cpus`` = torch threads per task, ``num_gpus`` =
``gpus_per_task`` so several slices share a GPU), retries a task whose worker died or that raised,
``retries`` times (the serial path too) — except for bad input (:class:`~mri_oes.errors.UserError`, e.g. NaN k-space in one
slice), which fails the same way every time and is reported at once (``TaskFailure.retried`` False)
— and the caller gets every outcome as it completes:

    for task, outcome in run_tasks(fn, tasks, workers=2, threads=1):
        ...   # outcome: the task's return value, or a TaskFailure (after the retries)

``fn`` must be an importable module-level function (Ray pickles it by reference); each task sets
its torch threads to ``threads`` before calling it (``OMP_NUM_THREADS`` etc. too, so NumPy/SigPy do
not oversubscribe the cores). Ray is the optional extra ``cluster`` (``pip install -e .[cluster]``).
"""
from __future__ import annotations

import errno
import os
import sys
import traceback
from dataclasses import dataclass
from typing import Any, Callable, Iterator, List, Optional, Sequence, Tuple

RAY_HINT = "Ray is not installed: running the slices one after the other (pip install -e .[cluster] for parallel workers)"
#: the logger of Ray's token-authentication banner (printed by every local ray.init)
RAY_AUTH_LOGGER = "ray._private.authentication.authentication_token_setup"
THREAD_VARS = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS", "NUMEXPR_NUM_THREADS")


#: errors of the output file system that no retry fixes (the serial path stops with one line)
_FATAL_ERRNOS = {errno.ENOSPC, errno.EROFS, errno.EDQUOT, errno.EACCES, errno.ENAMETOOLONG}


@dataclass
class TaskFailure:
    """A task that failed after its retries: ``error`` (one line) and ``detail`` (traceback)."""

    error: str
    detail: str = ""
    retried: bool = True   # False: bad input (UserError), failed once and was not retried

    def __str__(self):
        return self.error


def ray_available() -> bool:
    try:
        import ray  # noqa: F401
        return True
    except ImportError:
        return False


def _set_threads(threads: int) -> None:
    for v in THREAD_VARS:
        os.environ[v] = str(threads)
    from .runtime import configure_runtime
    configure_runtime(int(threads))


@dataclass
class _InputError:
    """A task's UserError, returned instead of raised so that Ray does not retry it."""

    error: str
    detail: str


def _call(fn: Callable, task: Any, threads: int):
    """What runs in a Ray worker (and serially): fix the threads, call ``fn(task)``."""
    _set_threads(threads)
    return fn(task)


def _call_remote(fn: Callable, task: Any, threads: int, board=None):
    """:func:`_call` in a Ray worker: bad input comes back as :class:`_InputError` (never retried);
    with a ``board`` (a :class:`StepBoard` actor) the task's training steps are reported to it."""
    from . import core
    from .errors import UserError
    key = str(task)
    if board is not None:
        core.STEP_REPORTER = lambda desc, step, total: board.update.remote(key, desc, step, total)
    try:
        return _call(fn, task, threads)
    except UserError as e:
        return _InputError(_short(e), traceback.format_exc())
    finally:
        if board is not None:
            core.STEP_REPORTER = None
            board.finish.remote(key)


class StepBoard:
    """The training steps of the tasks running in Ray workers (a Ray actor): workers ``update`` it
    about once a second, the driver reads ``snapshot()`` — ``{task: (desc, step, total)}`` — to draw a
    step bar per running task."""

    def __init__(self):
        self.state = {}

    def update(self, key, desc, step, total):
        self.state[key] = (desc, int(step), int(total))

    def finish(self, key):
        self.state.pop(key, None)

    def snapshot(self):
        return dict(self.state)


def _short(e: BaseException) -> str:
    msg = str(e).strip().splitlines()
    return f"{type(e).__name__}: {msg[-1] if msg else ''}".strip()


def _serial(fn, tasks, threads, retries: int = 0, log=None) -> Iterator[Tuple[Any, Any]]:
    """Each task in this process; one that raises (not bad input) is retried up to ``retries`` times,
    as Ray does, and reported as a :class:`TaskFailure` after the last try."""
    from .errors import UserError
    for t in tasks:
        for attempt in range(int(retries) + 1):
            try:
                out = _call(fn, t, threads)
                break
            except KeyboardInterrupt:
                raise
            except UserError:   # bad input fails the same way every time: not retried
                raise
            except OSError as e:   # a full disk, a read-only output: the same for every task, not retried
                if e.errno in _FATAL_ERRNOS:
                    raise
                out = TaskFailure(_short(e), traceback.format_exc())
                if attempt < int(retries) and log is not None:
                    log(f"{t}: {out.error}; retry {attempt + 1} of {int(retries)}")
                continue
            except Exception as e:   # reported per task; the others go on
                out = TaskFailure(_short(e), traceback.format_exc())   # after `retries` retries
                if attempt < int(retries) and log is not None:
                    log(f"{t}: {out.error}; retry {attempt + 1} of {int(retries)}")
        yield t, out


def _ray_failure(e: BaseException) -> TaskFailure:
    cause = getattr(e, "cause", None)
    if cause is not None:
        return TaskFailure(_short(cause), "".join(traceback.format_exception(cause)))
    return TaskFailure(_short(e), str(e))


def run_tasks(fn: Callable, tasks: Sequence[Any], *, workers: int = 1, threads: int = 1,
              gpus_per_task: float = 0.0, ray_address: Optional[str] = None, retries: int = 2,
              object_store_mb: int = 100, log: Callable[[str], None] = None,
              on_steps: Optional[Callable[[dict], None]] = None) -> Iterator[Tuple[Any, Any]]:
    """Yield ``(task, result or TaskFailure)`` as tasks complete.

    Serial in this process when ``workers == 1`` and no ``ray_address`` (no Ray start-up cost), or
    when Ray is not installed (with a one-line hint via ``log``). Otherwise Ray: a local instance of
    ``workers × threads`` CPUs (no dashboard, a small object store) started here and shut down at
    the end, or the cluster at ``ray_address`` (``auto`` = the one ``ray start`` made). On Ray,
    ``on_steps`` (if given) is called about once a second with the running tasks' training steps
    (:meth:`StepBoard.snapshot`), so the caller can draw a step bar per running task."""
    log = log or (lambda s: print(s, file=sys.stderr))
    tasks = list(tasks)
    if not tasks:
        return
    use_ray = uses_ray(workers, len(tasks), gpus_per_task, ray_address, check_installed=False)
    if use_ray and not ray_available():
        if ray_address is not None:
            from .errors import UserError
            raise UserError(f"--ray-address {ray_address}: Ray is not installed (pip install -e .[cluster])")
        log(RAY_HINT)
        use_ray = False
    if not use_ray:
        yield from _serial(fn, tasks, threads, retries=retries, log=log)
        return
    import ray
    started = False
    if not ray.is_initialized():
        env = {"env_vars": {v: str(threads) for v in THREAD_VARS}}
        if ray_address is not None:
            ray.init(address=ray_address, runtime_env=env, log_to_driver=False)
        else:
            # Ray's default for a local instance stays (token authentication on); only its banner about it
            # is silenced
            import logging
            logging.getLogger(RAY_AUTH_LOGGER).setLevel(logging.ERROR)
            kw = {}
            if gpus_per_task > 0:
                import torch
                kw["num_gpus"] = torch.cuda.device_count()
            ray.init(num_cpus=int(workers) * int(threads), include_dashboard=False,
                     object_store_memory=int(object_store_mb) * 1024 * 1024, log_to_driver=False,
                     runtime_env=env, configure_logging=False, **kw)
        started = True
    try:
        remote = ray.remote(_call_remote).options(num_cpus=int(threads), num_gpus=float(gpus_per_task),
                                           max_retries=int(retries), retry_exceptions=True)
        board = ray.remote(StepBoard).options(num_cpus=0).remote() if on_steps is not None else None
        pending = {remote.remote(fn, t, threads, board): t for t in tasks}
        while pending:
            done, _ = ray.wait(list(pending), num_returns=1, timeout=None if board is None else 1.0)
            if board is not None:
                on_steps(ray.get(board.snapshot.remote()))
            for ref in done:
                task = pending.pop(ref)
                try:
                    out = ray.get(ref)
                except KeyboardInterrupt:
                    raise
                except Exception as e:   # RayTaskError, WorkerCrashedError ... after the retries
                    out = _ray_failure(e)
                if isinstance(out, _InputError):
                    out = TaskFailure(out.error, out.detail, retried=False)
                yield task, out
    finally:
        if started:
            ray.shutdown()


def uses_ray(workers: int, n_tasks: Optional[int], gpus_per_task: float = 0.0, ray_address: Optional[str] = None,
             check_installed: bool = True) -> bool:
    """Whether :func:`run_tasks` runs on Ray: an existing cluster (``ray_address``) always; locally only
    when more than one task runs (``n_tasks`` None: unknown) with several workers or GPU shares — a
    single task runs in this process (no Ray start-up)."""
    use = ray_address is not None or ((n_tasks is None or n_tasks > 1) and (workers > 1 or gpus_per_task > 0))
    return use and (ray_available() if check_installed else True)


def describe_backend(workers: int, threads: int, gpus_per_task: float, ray_address: Optional[str],
                     n_tasks: Optional[int] = None) -> dict:
    """What :func:`run_tasks` will use for ``n_tasks`` tasks (recorded in the run's config)."""
    use_ray = uses_ray(workers, n_tasks, gpus_per_task, ray_address)
    out = {"backend": "ray" if use_ray else "serial", "workers": workers if use_ray else 1,
           "threads_per_worker": threads, "gpus_per_task": gpus_per_task, "ray_address": ray_address}
    if use_ray:
        import ray
        out["ray"] = ray.__version__
    return out


def summarize_failures(failures: List[Tuple[Any, TaskFailure]]) -> str:
    return "\n".join(f"  {t}: {f.error}" for t, f in failures)
