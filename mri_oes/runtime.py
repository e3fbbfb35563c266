"""Runtime settings for speed: thread count, and optional ``channels_last`` / ``torch.compile``.

Thread rule (:func:`default_threads`): PyTorch's own default is one intra-op thread per core, which
thrashes as soon as the cores are shared (several processes, or other jobs on the box): small
generators then run 10–100× slower. The default here is

* **1 thread** when the process may use ≤ 2 cores. Measured on the shared 2-core box (load average
  ~7, dense DIP step, wall time, median of 5): a 19.7k-parameter hourglass at 64×64 took 0.039 s/step
  with 1 thread and 0.295 s with 2 (7.5× slower); the ``cpu``-preset MRI hourglass (levels 5, width
  0.5) at 256×192 took 0.155 vs 0.598 s/step (3.9× slower with 2 threads);
* otherwise ``min(usable cores, 8)`` (convolutions of these sizes stop scaling beyond ~8 threads).

``usable cores`` is ``len(os.sched_getaffinity(0))`` (respects taskset/cgroup CPU sets) where the
platform has it, else ``os.cpu_count()``. ``OMP_NUM_THREADS`` set in the environment is honoured
as the default as well (explicit user choice). CLI: ``--threads N`` → :func:`configure_threads`.

Allocator (:func:`tune_allocator`, applied by every command through :func:`configure_runtime`): glibc
hands blocks of 32 MiB and more (one 128-channel 256×256 float32 activation) to ``mmap`` and returns
them to the kernel on ``free``, so every training step page-faults its activations back in (zeroed
pages: system time). Measured on the 2-core box, ``cpu``-preset Sparse-DIP on a 256×256 8-coil slice,
1 thread, 100 mask + 200 training steps: 145 s wall (78 s user + ~56 s system) with glibc's defaults,
73 s (72 user, 0.8 system) with ``mmap`` off and trimming off. ``benchmarks/allocator.py`` (same run,
box loaded by two other jobs): 243 → 131 s wall, system 96 → 1.1 s, 54.6 M → 0.3 M page faults, identical
PSNR. The cost: freed memory stays with the process until it exits — peak RSS 979 → 1,358 MiB there. ``MRI_OES_MALLOC=system``
keeps glibc's defaults; other C libraries are left alone.

``channels_last`` and ``torch.compile`` are options only (:func:`prepare_generator`):
``benchmarks/core_speed.py --compile --channels-last`` measures them per device; on this CPU neither was
a clear gain for the dense step (within a few % in CPU time, and compiling costs minutes). Compiled or
channels_last runs give the same results up to float rounding. bfloat16 generator passes are a fit
option (``core.fit(precision=...)``, ``--precision``; ``benchmarks/precision.py``), not a module transform.
"""
from __future__ import annotations

import ctypes
import ctypes.util
import os
import sys
from typing import Optional

import torch
import torch.nn as nn

from .errors import UserError

MAX_DEFAULT_THREADS = 8


def usable_cores() -> int:
    """Cores this process may run on (CPU affinity where available)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):
        return max(1, os.cpu_count() or 1)


def default_threads() -> int:
    """The default intra-op thread count (see the module docstring for the rule)."""
    env = os.environ.get("OMP_NUM_THREADS", "").strip()
    if env.isdigit() and int(env) > 0:
        return int(env)
    cores = usable_cores()
    if cores <= 2:
        return 1
    return min(cores, MAX_DEFAULT_THREADS)


def threads_for_tasks(pending: int, cores: Optional[int] = None, load: Optional[float] = None) -> int:
    """Torch threads per task when ``pending`` tasks (e.g. recon's slices) are all there is to run: the
    idle cores (``cores`` minus the 1-minute load average, rounded) split between them, at least 1, at
    most :data:`MAX_DEFAULT_THREADS`. One lone slice on an idle 2-core box gets 2 threads: the ``cpu``
    preset's 192-channel deep decoder runs 1.9x faster in wall time than with 1 (0.265 -> 0.137 s/step,
    230x180, float32); on a loaded box (load ~7, the measurement behind :func:`default_threads`) it
    stays at 1, where 2 threads were 4-7x slower."""
    cores = usable_cores() if cores is None else int(cores)
    if load is None:
        try:
            load = os.getloadavg()[0]
        except (AttributeError, OSError):
            load = float(cores)
    idle = max(1, cores - int(round(load)))
    return max(1, min(idle // max(1, int(pending)), MAX_DEFAULT_THREADS))


def configure_threads(n: Optional[int] = None) -> int:
    """Set torch's intra-op threads to ``n`` (``None``/0: :func:`default_threads`) and inter-op
    threads to 1 where still possible; return the thread count in effect (record it as ``threads``)."""
    if n is None or n == 0:
        n = default_threads()
    try:
        n = int(n)
    except (TypeError, ValueError):
        raise UserError(f"--threads must be a positive integer, got {n!r}") from None
    if n < 1:
        raise UserError(f"--threads must be a positive integer, got {n}")
    torch.set_num_threads(n)
    try:   # only allowed before any inter-op parallel work has started; harmless to skip
        torch.set_num_interop_threads(1)
    except RuntimeError:
        pass
    return torch.get_num_threads()


# glibc mallopt parameters (malloc.h)
_M_TRIM_THRESHOLD, _M_TOP_PAD, _M_MMAP_MAX = -1, -2, -4
_allocator_state: Optional[str] = None


def tune_allocator() -> str:
    """Keep freed memory in the glibc heap (no ``mmap`` for large blocks, no trimming, 64 MiB top pad),
    so training steps stop page-faulting their activations (module docstring). Idempotent; returns
    ``"tuned"``, ``"system"`` (``MRI_OES_MALLOC=system``, or not glibc) as the setting in effect."""
    global _allocator_state
    if _allocator_state is not None:
        return _allocator_state
    state = "system"
    if os.environ.get("MRI_OES_MALLOC", "").strip().lower() != "system" and sys.platform.startswith("linux"):
        try:
            libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
            mallopt = libc.mallopt
            mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
            if (mallopt(_M_MMAP_MAX, 0) and mallopt(_M_TRIM_THRESHOLD, 2**30 - 1)
                    and mallopt(_M_TOP_PAD, 64 * 2**20)):
                state = "tuned"
        except (OSError, AttributeError):   # not glibc (musl, macOS): nothing to tune
            pass
    _allocator_state = state
    return state


def configure_runtime(threads: Optional[int] = None) -> int:
    """What every command does first: :func:`tune_allocator`, then :func:`configure_threads`;
    returns the thread count in effect."""
    tune_allocator()
    return configure_threads(threads)


def resolve_device(name: str = "cpu") -> torch.device:
    """``cpu``, ``cuda``, ``cuda:N``, ``mps`` or ``auto`` (CUDA when available) as a torch device;
    one clear line naming ``--device`` when it is not available here."""
    name = name or "cpu"
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if name.startswith("cuda"):
        if not torch.cuda.is_available():
            raise UserError(f"--device {name}: no CUDA device is available here (use --device cpu)")
        idx = int(name.split(":")[1]) if ":" in name else 0
        if idx >= torch.cuda.device_count():
            raise UserError(f"--device {name}: only {torch.cuda.device_count()} CUDA device(s)")
    if name == "mps" and not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()):
        raise UserError("--device mps: MPS is not available here (use --device cpu)")
    try:
        return torch.device(name)
    except RuntimeError as e:
        raise UserError(f"--device {name!r}: {e}") from None


def prepare_generator(net: nn.Module, z: torch.Tensor, *, channels_last: bool = False,
                      compile: bool = False):
    """Optional speed transforms of ``(net, z)``: ``channels_last`` memory format (same values) and
    ``torch.compile`` (returns the compiled module; used by the dense path, which calls the module
    itself). Both off by default; measure with ``benchmarks/core_speed.py`` before enabling one on a
    device."""
    if channels_last:
        net = net.to(memory_format=torch.channels_last)
        z = z.contiguous(memory_format=torch.channels_last)
    if compile:
        net = torch.compile(net)
    return net, z
