"""Adapters between our :class:`~operators.LinearOperator` and other libraries' linear operators.

* **deepinv** (optional extra ``interop``; see README "Interop"):
  :func:`from_deepinv` wraps a deepinv ``LinearPhysics`` as an operator (usable in ``mri_oes.core.fit``
  and ``methods.train_generator`` like any built-in one); :func:`to_deepinv` exposes any of ours as a
  deepinv ``LinearPhysics``. Noise models map both ways: our :class:`~operators.GaussianNoise` ↔
  deepinv ``GaussianNoise`` (a clipped one becomes a deepinv ``NoiseModel`` that clips), deepinv
  ``ZeroNoise`` ↔ ``None``; any other deepinv noise model is called through a wrapper.
* **SigPy** (a core dependency): :func:`from_sigpy` wraps a ``sigpy.linop.Linop`` (autograd through
  the Linop's adjoint, so it trains in ``fit``); :func:`to_sigpy` exposes ours as a ``Linop`` whose
  normal operator ``N`` is our :meth:`~operators.LinearOperator.normal` — how
  :mod:`mri_oes.mri.baselines` runs SigPy's SENSE / L1-wavelet solvers on ANY operator, on its device.

deepinv and SigPy are imported only when an adapter is called.
"""
from __future__ import annotations

from typing import Optional, Sequence

import numpy as np
import torch

from .base import GaussianNoise, LinearOperator, OperatorInputError


# ============================================================================================ deepinv
def _import_deepinv():
    try:
        import deepinv
    except ImportError as e:  # pragma: no cover - depends on the environment
        raise ImportError("deepinv is not installed: run `./install.sh interop` and use .venv-interop "
                          f"(deepinv needs torchvision, which does not install beside the CPU torch) ({e})")
    return deepinv


def _module_device(m) -> torch.device:
    for t in list(m.buffers()) + list(m.parameters()):
        return t.device
    return torch.device("cpu")


class _DeepinvNoise:
    """One of deepinv's noise models behind our noise interface ``noise(y, generator=None)``."""

    def __init__(self, model):
        self.model = model

    def __call__(self, y, generator: Optional[torch.Generator] = None):
        if generator is not None and getattr(self.model, "rng", None) is not None:
            seed = int(torch.randint(0, 2 ** 31 - 1, (1,), generator=generator))
            return self.model(y, seed=seed)
        if generator is not None:
            # the model has no generator of its own: make its draws reproducible through the global RNG
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(int(torch.randint(0, 2 ** 31 - 1, (1,), generator=generator)))
                return self.model(y)
        return self.model(y)

    def describe(self):
        return {"type": "deepinv", "model": type(self.model).__name__}

    def __repr__(self):
        return f"DeepinvNoise({type(self.model).__name__})"


def _noise_from_deepinv(model):
    dinv = _import_deepinv()
    P = dinv.physics
    if model is None or isinstance(model, P.ZeroNoise):
        return None
    ours = getattr(model, "_mri_oes_noise", None)       # a noise model that to_deepinv made
    if ours is not None:
        return ours
    if type(model) is P.GaussianNoise and model.sigma.numel() == 1:
        return GaussianNoise(float(model.sigma))
    return _DeepinvNoise(model)


def _noise_to_deepinv(noise):
    dinv = _import_deepinv()
    P = dinv.physics
    if noise is None:
        return P.ZeroNoise()
    if isinstance(noise, _DeepinvNoise):
        return noise.model
    if isinstance(noise, GaussianNoise) and noise.clip is None:
        m = P.GaussianNoise(sigma=noise.sigma)
    else:
        # clipped Gaussian (or any other noise of ours): a deepinv NoiseModel calling ours
        m = P.NoiseModel(noise_model=lambda y: noise(y))
    m._mri_oes_noise = noise
    return m


class DeepinvOperator(LinearOperator):
    """A deepinv ``LinearPhysics`` as an operator: ``A = physics.A``, ``A^H = physics.A_adjoint``.

    ``in_shape``: the shape of ONE signal without batch dimension (deepinv physics take ``(B, ...)``);
    ``out_shape`` and the dtypes are found by applying ``physics.A`` to zeros. ``dtype``: the input
    dtype (``torch.float32`` default; ``torch.complex64`` for complex-valued physics)."""

    def __init__(self, physics, in_shape: Sequence[int], dtype: torch.dtype = torch.float32):
        dinv = _import_deepinv()
        if not isinstance(physics, dinv.physics.LinearPhysics):
            raise OperatorInputError(f"from_deepinv: expected a deepinv LinearPhysics, got "
                                     f"{type(physics).__name__}")
        in_shape = tuple(int(s) for s in in_shape)
        dev = _module_device(physics)
        with torch.no_grad():
            probe = physics.A(torch.zeros((1,) + in_shape, dtype=dtype, device=dev))
        self.physics = physics
        self.name = f"deepinv:{type(physics).__name__}"
        self.in_dtype, self.out_dtype = dtype, probe.dtype
        super().__init__(in_shape, tuple(probe.shape[1:]), noise=_noise_from_deepinv(physics.noise_model))

    def _forward(self, x):
        return self.physics.A(x)

    def _adjoint(self, y):
        return self.physics.A_adjoint(y)

    def to(self, device):
        self.physics.to(device)
        return self

    @property
    def device(self):
        return _module_device(self.physics)

    def describe(self):
        d = super().describe()
        d["physics"] = repr(self.physics)[:500]
        return d


def from_deepinv(physics, in_shape: Sequence[int], dtype: torch.dtype = torch.float32) -> DeepinvOperator:
    """Wrap a deepinv ``LinearPhysics`` as an :class:`~operators.LinearOperator` (see
    :class:`DeepinvOperator`). Its noise model becomes the operator's ``noise``."""
    return DeepinvOperator(physics, in_shape, dtype)


def to_deepinv(op: LinearOperator):
    """Expose ``op`` as a deepinv ``LinearPhysics`` (``A``, ``A_adjoint``, ``noise_model`` from
    ``op.noise``; inputs ``(B, *op.in_shape)``). A wrapped deepinv physics is returned unwrapped."""
    dinv = _import_deepinv()
    if isinstance(op, DeepinvOperator):
        return op.physics

    class OperatorPhysics(dinv.physics.LinearPhysics):
        """An ``operators.LinearOperator`` seen as a deepinv ``LinearPhysics``."""

        def __init__(self, operator):
            super().__init__(noise_model=_noise_to_deepinv(operator.noise), img_size=operator.in_shape,
                             device=operator.device)
            self.operator = operator

        def A(self, x, **kwargs):
            return self.operator.forward(x)

        def A_adjoint(self, y, **kwargs):
            return self.operator.adjoint(y)

        def to(self, *args, **kwargs):
            dev = args[0] if args else kwargs.get("device")
            if dev is not None and getattr(self, "operator", None) is not None:
                self.operator.to(dev)
            return super().to(*args, **kwargs)

    return OperatorPhysics(op)


# ============================================================================================== SigPy
def _to_numpy(t: torch.Tensor):
    return t.detach().cpu().numpy()


class _SigpyApply(torch.autograd.Function):
    """y = L(x) with gradient L^H(grad) (SigPy computes in numpy on the CPU)."""

    @staticmethod
    def forward(ctx, x, op):
        ctx.op = op
        return op._apply_np(op.linop, x, op.out_shape, op.out_dtype)

    @staticmethod
    def backward(ctx, g):
        op = ctx.op
        return op._apply_np(op.linop.H, g, op.in_shape, op.in_dtype), None


class SigpyOperator(LinearOperator):
    """A ``sigpy.linop.Linop`` as an operator. ``in_shape = linop.ishape``, ``out_shape = linop.oshape``;
    ``dtype`` (default ``complex64``) is the data type of both sides (``float32`` for real Linops).
    Gradients flow through the Linop's adjoint, so it trains in ``fit``; SigPy runs on the CPU."""

    def __init__(self, linop, dtype: torch.dtype = torch.complex64, name: Optional[str] = None):
        import sigpy as sp
        if not isinstance(linop, sp.linop.Linop):
            raise OperatorInputError(f"from_sigpy: expected a sigpy.linop.Linop, got {type(linop).__name__}")
        self.linop = linop
        self.name = name or f"sigpy:{type(linop).__name__}"
        self.in_dtype = self.out_dtype = dtype
        super().__init__(linop.ishape, linop.oshape)

    @staticmethod
    def _apply_np(L, t, shape, dtype):
        a = _to_numpy(t)
        outs = [np.asarray(L(a[i])) for i in range(a.shape[0])]
        out = np.stack(outs) if outs else np.zeros((0,) + tuple(shape), a.dtype)
        # keep the precision SigPy computed in (a float32 filter gives float32 even for float64 input:
        # pretending otherwise would hide its round-off from check_adjoint); fix real vs complex
        double = out.dtype in (np.float64, np.complex128) and a.dtype in (np.float64, np.complex128)
        if dtype.is_complex:
            out = out.astype(np.complex128 if double else np.complex64, copy=False)
        else:
            out = out.real.astype(np.float64 if double else np.float32, copy=False)
        return torch.from_numpy(np.ascontiguousarray(out)).to(t.device)

    def _forward(self, x):
        return _SigpyApply.apply(x, self)

    def _adjoint(self, y):
        return _SigpyApply.apply(y, _SigpyAdjointView(self))


class _SigpyAdjointView:
    def __init__(self, op):
        self.linop = op.linop.H
        self.in_shape, self.out_shape = op.out_shape, op.in_shape
        self.in_dtype, self.out_dtype = op.out_dtype, op.in_dtype
        self._apply_np = op._apply_np


def from_sigpy(linop, dtype: torch.dtype = torch.complex64, name: Optional[str] = None) -> SigpyOperator:
    """Wrap a ``sigpy.linop.Linop`` as an :class:`~operators.LinearOperator`."""
    return SigpyOperator(linop, dtype, name)


def to_sigpy(op: LinearOperator):
    """Expose ``op`` as a ``sigpy.linop.Linop`` (numpy in, numpy out; computed by the operator in torch
    on the operator's device). ``Linop.N`` is the operator's own :meth:`normal`, so SigPy's apps
    (``LinearLeastSquares``: CG-SENSE, FISTA L1-wavelet) run through it with one host↔device transfer
    per iteration."""
    import sigpy as sp

    def run(fn, in_dtype, x):
        t = torch.from_numpy(np.ascontiguousarray(x))
        want = in_dtype if not (t.dtype in (torch.float64, torch.complex128)) else \
            (torch.complex128 if in_dtype.is_complex else torch.float64)
        t = t.to(device=op.device, dtype=want)
        with torch.no_grad():
            return fn(t).cpu().numpy()

    fns = {"A": (op.forward, op.out_shape, op.in_shape, op.in_dtype, op.name),
           "AH": (op.adjoint, op.in_shape, op.out_shape, op.out_dtype, f"{op.name}^H"),
           "N": (op.normal, op.in_shape, op.in_shape, op.in_dtype, f"{op.name}^H {op.name}")}

    class _Linop(sp.linop.Linop):
        def __init__(self, kind):
            self.kind = kind
            self.fn, oshape, ishape, self.in_dtype, repr_str = fns[kind]
            super().__init__(list(oshape), list(ishape), repr_str=repr_str)

        def _apply(self, input):
            with sp.get_device(input):
                return run(self.fn, self.in_dtype, input)

        def _adjoint_linop(self):
            return _Linop({"A": "AH", "AH": "A", "N": "N"}[self.kind])

        def _normal_linop(self):
            return _Linop("N") if self.kind == "A" else super()._normal_linop()

    return _Linop("A")
