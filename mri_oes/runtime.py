"""Runtime settings for speed: thread count, and optional ``channels_last`` / ``torch.compile``.

Thread rule (:func:`default_threads`): PyTorch's own default is one intra-op thread per core, which
thrashes as soon as the cores are shared (several processes, or other jobs on the box): small
generators then run 10–100× slower. The default here is

* **1 thread** when the process may use ≤ 2 cores (measured on a shared 2-core box: 2 threads were
  never faster than 1 for the generators of this package once anything else runs, and up to several
  times slower when it does);
* otherwise ``min(usable cores, 8)`` (convolutions of these sizes stop scaling beyond ~8 threads).

``usable cores`` is ``len(os.sched_getaffinity(0))`` (respects taskset/cgroup CPU sets) where the
platform has it, else ``os.cpu_count()``. ``OMP_NUM_THREADS`` set in the environment is honoured
as the default as well (explicit user choice). CLI: ``--threads N`` → :func:`configure_threads`.

``channels_last`` and ``torch.compile`` are options only (:func:`prepare_generator`): the benchmark
``benchmarks/core_speed.py`` measures them per device; on the CPU they were not a gain (see its
closing notes), so both are off by default. Compiled or channels_last runs give the same results
up to float rounding.
"""
from __future__ import annotations

import os
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


def prepare_generator(net: nn.Module, z: torch.Tensor, *, channels_last: bool = False,
                      compile: bool = False):
    """Optional speed transforms of ``(net, z)``: ``channels_last`` memory format (same values) and
    ``torch.compile`` (returns the compiled module; same parameters, so ``functional_call`` masking
    still applies). Both off by default; measure with ``benchmarks/core_speed.py`` before enabling."""
    if channels_last:
        net = net.to(memory_format=torch.channels_last)
        z = z.contiguous(memory_format=torch.channels_last)
    if compile:
        net = torch.compile(net)
    return net, z
