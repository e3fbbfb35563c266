"""Checks a plugin author runs on an operator (shipped with the package, usable from any test suite).

:func:`check_adjoint` tests ``<A x, y> = <x, A^H y>`` on random inputs, together with the shapes and
dtypes of ``A x`` / ``A^H y`` and batching over leading dimensions::

    from operators.testing import check_adjoint
    err = check_adjoint(MyBlur((3, 32, 32)))     # relative error; raises AdjointTestError on failure
    # AdjointTestError.kind: call, shape, dtype, finite, adjoint or batching (the violated contract part)
"""
from __future__ import annotations

from typing import Optional, Sequence

import torch

from .base import LinearOperator


#: the parts of the operator contract (operators.base) that check_adjoint tests, as named in its errors
CONTRACT_PARTS = {
    "call": "forward/adjoint must run on (*batch, *in_shape) / (*batch, *out_shape) tensors",
    "shape": "A x must have shape (*batch, *out_shape) and A^H y (*batch, *in_shape)",
    "dtype": "A x / A^H y must be complex exactly when out_dtype / in_dtype is complex",
    "finite": "A x and A^H y must be finite for finite inputs",
    "adjoint": "adjoint must be the exact adjoint: <A x, y> = <x, A^H y>",
    "batching": "a batch must give the same result as its items one by one",
}


class AdjointTestError(AssertionError):
    """An operator failed the adjoint / shape check. ``kind`` names the violated part of the contract
    (a key of :data:`CONTRACT_PARTS`: call, shape, dtype, finite, adjoint, batching); the message says
    which part and by how much."""

    def __init__(self, kind: str, op_name: str, detail: str):
        self.kind = kind
        super().__init__(f"{op_name} violates the operator contract ({kind}: {CONTRACT_PARTS[kind]}): {detail}")


def _rand(shape, dtype, g):
    if dtype.is_complex:
        re = torch.randn(shape, generator=g, dtype=torch.float64)
        im = torch.randn(shape, generator=g, dtype=torch.float64)
        return torch.complex(re, im).to(dtype)
    return torch.randn(shape, generator=g, dtype=torch.float64).to(dtype)


def _working_dtype(dtype: torch.dtype, double: bool) -> torch.dtype:
    if not double:
        return dtype
    return torch.complex128 if dtype.is_complex else torch.float64


def default_tolerance(dtype: torch.dtype) -> float:
    """1e-10 when the check ran in double precision, 1e-4 in single precision (float32 round-off
    of sums over ~1e5 terms stays well below that)."""
    return 1e-10 if dtype in (torch.float64, torch.complex128) else 1e-4


def _raise_if_wrong_shape(op: LinearOperator, x, y) -> None:
    """After forward/adjoint raised: an implementation (``_forward`` / ``_adjoint``) returning the wrong
    shape is a shape violation (the base class fails reshaping it)."""
    for what, fn, t, n_in, shape in (("A x", "_forward", x, len(op.in_shape), op.out_shape),
                                     ("A^H y", "_adjoint", y, len(op.out_shape), op.in_shape)):
        try:
            flat = t.reshape(-1, *t.shape[t.dim() - n_in:])
            out = getattr(op, fn)(flat)
        except Exception:
            continue
        want = (flat.shape[0],) + tuple(shape)
        if tuple(out.shape) != want:
            raise AdjointTestError("shape", op.name, f"{what}: {fn} returned shape {tuple(out.shape)} for input "
                                   f"{tuple(flat.shape)}, expected {want} (declared "
                                   f"{'out' if what == 'A x' else 'in'}_shape {tuple(shape)})")


def check_adjoint(op: LinearOperator, batch: Sequence[int] = (2,), seed: int = 0,
                  tol: Optional[float] = None, double: bool = True) -> float:
    """Dot-product test of ``op`` and its adjoint; returns the relative error
    ``|<A x, y> - <x, A^H y>| / |<A x, y>|``.

    * ``batch``: leading batch dims of the random inputs (``()`` for a single item); the outputs must
      have shapes ``(*batch, *out_shape)`` and ``(*batch, *in_shape)``;
    * ``double=True`` runs in float64/complex128 first; an operator that cannot take double precision
      (e.g. a wrapped third-party model that casts) falls back to its own dtypes;
    * ``tol``: default :func:`default_tolerance` of the dtype actually used.

    Raises :class:`AdjointTestError` whose ``kind`` and message name the violated part of the contract
    (:data:`CONTRACT_PARTS`: call, shape, dtype, finite, adjoint, batching)."""
    batch = tuple(int(b) for b in batch)
    g = torch.Generator().manual_seed(int(seed))
    dev = op.device
    for use_double in ((True, False) if double else (False,)):
        x = _rand(batch + op.in_shape, _working_dtype(op.in_dtype, use_double), g).to(dev)
        y = _rand(batch + op.out_shape, _working_dtype(op.out_dtype, use_double), g).to(dev)
        try:
            Ax, AHy = op.forward(x), op.adjoint(y)
        except (RuntimeError, TypeError) as e:
            if use_double and double:
                continue            # try the operator's own precision
            _raise_if_wrong_shape(op, x, y)
            raise AdjointTestError("call", op.name, f"forward/adjoint failed: {e}") from e
        break
    for what, t, shape in (("A x", Ax, batch + op.out_shape), ("A^H y", AHy, batch + op.in_shape)):
        if tuple(t.shape) != shape:
            raise AdjointTestError("shape", op.name, f"{what} has shape {tuple(t.shape)}, expected {shape} "
                                   f"(batch {batch} + declared {'out' if what == 'A x' else 'in'}_shape)")
        expect_complex = (op.out_dtype if what == "A x" else op.in_dtype).is_complex
        if t.is_complex() != expect_complex:
            raise AdjointTestError("dtype", op.name, f"{what} has dtype {t.dtype}, but the operator declares "
                                   f"{'complex' if expect_complex else 'real'} data")
        if not torch.isfinite(torch.view_as_real(t) if t.is_complex() else t).all():
            raise AdjointTestError("finite", op.name, f"{what} contains NaN or Inf")
    used = torch.promote_types(Ax.dtype, AHy.dtype)
    cd = torch.complex128 if used in (torch.float64, torch.complex128) else torch.complex64
    lhs = torch.vdot(Ax.reshape(-1).to(cd), y.reshape(-1).to(cd))
    rhs = torch.vdot(x.reshape(-1).to(cd), AHy.reshape(-1).to(cd))
    denom = max(float(abs(lhs)), float(abs(rhs)), 1e-300)
    err = float(abs(lhs - rhs)) / denom
    limit = default_tolerance(used) if tol is None else float(tol)
    if not err <= limit:
        raise AdjointTestError("adjoint", op.name, f"adjoint test failed: <Ax, y> = {complex(lhs):.6g}, "
                               f"<x, A^H y> = {complex(rhs):.6g}, relative error {err:.3g} > {limit:g} "
                               f"(dtype {used})")
    if batch:
        # batching: the first item of a batch must equal the operator applied to that item alone
        first = op.forward(x.reshape(-1, *op.in_shape)[0])
        ref = Ax.reshape(-1, *op.out_shape)[0]
        scale = float(ref.abs().max()) or 1.0
        if float((first - ref).abs().max()) > 1e3 * limit * scale + 1e-12:
            raise AdjointTestError("batching", op.name, "the first item of a batched forward differs from "
                                   f"the forward of that item alone by {float((first - ref).abs().max()):.3g}")
    return err
