"""One interface for linear forward models ``y = A x (+ noise)`` on torch tensors.

Every physics object (denoising, inpainting, super-resolution, multi-coil MRI, a user's plugin) is a
:class:`LinearOperator`:

* ``forward(x)`` (also ``A(x)``) and ``adjoint(y)`` (also ``A.H(y)``);
* ``in_shape`` / ``out_shape``: the shape of ONE item, without batch dimensions. Inputs may carry any
  number of leading batch dimensions: ``(*batch, *in_shape)``;
* ``in_dtype`` / ``out_dtype``: real (float32) or complex (complex64) data;
* ``.to(device)`` moves the operator's buffers;
* an optional noise model (``noise``) used by :meth:`measure`;
* ``from_network(out)``: how a generator's output tensor ``(B, C, Hg, Wg)`` becomes an operator input
  (default: centre-crop to the image grid; MRI maps 2 channels to a complex image). Generators run on
  a grid that is a multiple of ``2**levels``; the crop happens here, never by resampling the data.

Operators compose: ``A @ B`` is ``x -> A(B(x))`` with adjoint ``B^H A^H``; ``c * A`` scales.

Plugin contract (what :func:`operators.build` and ``--operator NAME --operator-args JSON`` rely on):

1. the constructor takes keyword arguments ``shape`` and ``noise``, plus any options of its own::

       @operators.register("blur")
       class Blur(LinearOperator):
           def __init__(self, shape, sigma=1.0, noise=None):
               super().__init__(in_shape=shape, out_shape=shape, noise=noise)
               ...

   The registry calls ``Blur(shape=(C, H, W), noise=GaussianNoise(...) or None, **operator_args)``:
   ``shape`` is the image's ``(C, H, W)`` (the operator's ``in_shape``), ``noise`` is handed on to
   :meth:`LinearOperator.__init__`, the options come from ``--operator-args``. A constructor that
   cannot take these keywords (e.g. ``__init__(self, in_shape, sigma)``) is refused with
   :class:`operators.registry.OperatorContractError` naming this contract;
2. ``_forward`` / ``_adjoint`` take ``(B, *in_shape)`` / ``(B, *out_shape)`` tensors of ``in_dtype`` /
   ``out_dtype`` and return ``(B, *out_shape)`` / ``(B, *in_shape)``; the base class adds the batch
   handling and input checks;
3. ``_adjoint`` is the exact adjoint: :func:`operators.testing.check_adjoint` checks shapes, dtypes,
   batching and ``<A x, y> = <x, A^H y>`` and names the part of the contract that fails.

A plugin in another package registers through the entry-point group ``mri_oes.operators``
(:mod:`operators.registry`).
"""
from __future__ import annotations

import functools
import hashlib
import inspect
import math
from typing import Optional, Sequence

import numpy as np
import torch


class OperatorInputError(ValueError):
    """Raised for inputs an operator cannot take (wrong shape, dtype, NaN/Inf...)."""


# --------------------------------------------------------------------------------------------- noise
class GaussianNoise:
    """Additive white Gaussian noise with standard deviation ``sigma`` (complex: per real/imag part).

    ``clip`` optionally clips the noisy result (the OES natural-image protocol clips to [0, 1]).
    """

    def __init__(self, sigma: float, clip: Optional[tuple] = None):
        if not (sigma >= 0 and math.isfinite(sigma)):
            raise OperatorInputError(f"noise sigma must be a finite number >= 0, got {sigma!r}")
        self.sigma = float(sigma)
        self.clip = clip

    def __call__(self, y: torch.Tensor, generator: Optional[torch.Generator] = None) -> torch.Tensor:
        if self.sigma > 0:
            if y.is_complex():
                re = torch.randn(y.shape, generator=generator, dtype=y.real.dtype, device="cpu")
                im = torch.randn(y.shape, generator=generator, dtype=y.real.dtype, device="cpu")
                y = y + self.sigma * torch.complex(re, im).to(y.device)
            else:
                y = y + self.sigma * torch.randn(y.shape, generator=generator, dtype=y.dtype,
                                                 device="cpu").to(y.device)
        if self.clip is not None:
            y = y.clamp(*self.clip)
        return y

    def __repr__(self):
        return f"GaussianNoise(sigma={self.sigma}, clip={self.clip})"

    def describe(self) -> dict:
        return {"type": "gaussian", "sigma": self.sigma, "clip": list(self.clip) if self.clip else None}


def noise_from_description(d):
    """Inverse of ``GaussianNoise.describe()`` (``None`` stays ``None``)."""
    if d is None:
        return None
    if isinstance(d, dict) and d.get("type") == "gaussian":
        return GaussianNoise(d["sigma"], tuple(d["clip"]) if d.get("clip") else None)
    raise OperatorInputError(f"cannot rebuild noise model from {d!r}")


# ------------------------------------------------------------------ constructor arguments (describe)
def _jsonable_arg(v):
    """JSON-able record of one constructor argument. Tensors/arrays become a digest
    ``{"tensor": {shape, dtype, sha1}}`` (the value must be passed again to rebuild)."""
    if v is None or isinstance(v, (bool, int, float, str)):
        return v
    if isinstance(v, (tuple, list)):
        return [_jsonable_arg(a) for a in v]
    if isinstance(v, dict):
        return {str(k): _jsonable_arg(a) for k, a in v.items()}
    if isinstance(v, complex):
        return {"complex": [v.real, v.imag]}
    if isinstance(v, (np.generic,)):
        return v.item()
    if isinstance(v, (torch.Tensor, np.ndarray)):
        a = v.detach().cpu().numpy() if isinstance(v, torch.Tensor) else np.asarray(v)
        if a.size == 1 and a.ndim == 0:
            return a.item() if not np.iscomplexobj(a) else {"complex": [a.real.item(), a.imag.item()]}
        digest = hashlib.sha1(np.ascontiguousarray(a).tobytes()).hexdigest()[:16]
        return {"tensor": {"shape": list(a.shape), "dtype": str(a.dtype), "sha1": digest}}
    if isinstance(v, GaussianNoise):
        return {"noise": v.describe()}
    if isinstance(v, LinearOperator):
        return {"operator": v.describe()}
    r = repr(v)
    if " at 0x" in r:   # a memory address would make the record (and checkpoint identities) differ per run
        r = f"<{type(v).__module__}.{type(v).__qualname__} object>"
    return {"repr": r[:500]}


def _record_init_args(init):
    """Wrap a subclass ``__init__`` so the OUTERMOST constructor call records its bound arguments."""
    sig = inspect.signature(init)

    @functools.wraps(init)
    def wrapped(self, *args, **kwargs):
        if "_init_args" not in self.__dict__:
            try:
                bound = sig.bind(self, *args, **kwargs)
                bound.apply_defaults()
                rec = {}
                for i, (k, v) in enumerate(bound.arguments.items()):
                    if i == 0:
                        continue
                    kind = sig.parameters[k].kind
                    if kind is inspect.Parameter.VAR_KEYWORD:
                        rec.update({kk: _jsonable_arg(vv) for kk, vv in v.items()})
                    elif kind is inspect.Parameter.VAR_POSITIONAL:
                        rec[k] = _jsonable_arg(list(v))
                    else:
                        rec[k] = _jsonable_arg(v)
                self.__dict__["_init_args"] = rec
            except TypeError:  # the constructor will raise its own error
                pass
        init(self, *args, **kwargs)

    wrapped._records_init_args = True
    return wrapped


# ------------------------------------------------------------------------------------------ operator
class LinearOperator:
    """Base class: subclasses set ``in_shape``, ``out_shape`` (dtypes optional) and implement
    ``_forward`` / ``_adjoint`` on tensors of shape ``(B, *in_shape)`` / ``(B, *out_shape)``."""

    name: str = "linear"
    in_dtype: torch.dtype = torch.float32
    out_dtype: torch.dtype = torch.float32

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        init = cls.__dict__.get("__init__")
        if init is not None and not getattr(init, "_records_init_args", False):
            cls.__init__ = _record_init_args(init)

    def __init__(self, in_shape: Sequence[int], out_shape: Sequence[int], noise=None):
        self.in_shape = tuple(int(s) for s in in_shape)
        self.out_shape = tuple(int(s) for s in out_shape)
        self.noise = noise

    # ---- to implement
    def _forward(self, x: torch.Tensor) -> torch.Tensor:  # pragma: no cover - abstract
        raise NotImplementedError

    def _adjoint(self, y: torch.Tensor) -> torch.Tensor:  # pragma: no cover - abstract
        raise NotImplementedError

    # ---- public API
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x, batch = self._flatten(x, self.in_shape, self.in_dtype, "input x")
        return self._forward(x).reshape(*batch, *self.out_shape)

    __call__ = forward

    def adjoint(self, y: torch.Tensor) -> torch.Tensor:
        y, batch = self._flatten(y, self.out_shape, self.out_dtype, "measurement y")
        return self._adjoint(y).reshape(*batch, *self.in_shape)

    A = forward
    A_adjoint = adjoint

    @property
    def H(self) -> "LinearOperator":
        return _Adjoint(self)

    def normal(self, x: torch.Tensor) -> torch.Tensor:
        """``A^H A x``."""
        return self.adjoint(self.forward(x))

    def measure(self, x: torch.Tensor, seed: Optional[int] = None) -> torch.Tensor:
        """Simulate measurements ``A x + noise`` (noise from ``self.noise``, seeded)."""
        y = self.forward(x)
        if self.noise is not None:
            g = torch.Generator().manual_seed(int(seed)) if seed is not None else None
            y = self.noise(y, generator=g)
        return y

    def from_network(self, out: torch.Tensor) -> torch.Tensor:
        """Map a generator output ``(B, C, Hg, Wg)`` to an operator input ``(B, *in_shape)``."""
        if out.shape[1:-2] != self.in_shape[:-2]:
            raise OperatorInputError(
                f"{self.name}: generator gives {out.shape[1]} channels, operator input needs shape "
                f"{self.in_shape}")
        return center_crop(out, self.in_shape[-2:])

    @property
    def network_channels(self) -> int:
        """Number of output channels a generator must produce for this operator."""
        return self.in_shape[0] if len(self.in_shape) == 3 else 1

    def to(self, device) -> "LinearOperator":
        """Move every tensor attribute to ``device`` (in place; returns self)."""
        for k, v in list(vars(self).items()):
            if isinstance(v, torch.Tensor):
                setattr(self, k, v.to(device))
            elif isinstance(v, LinearOperator):
                v.to(device)
        return self

    @property
    def device(self) -> torch.device:
        for v in vars(self).values():
            if isinstance(v, torch.Tensor):
                return v.device
            if isinstance(v, LinearOperator):
                return v.device
        return torch.device("cpu")

    def __matmul__(self, other: "LinearOperator") -> "LinearOperator":
        return Composed(self, other)

    def __mul__(self, c) -> "LinearOperator":
        return Scaled(self, c)

    __rmul__ = __mul__

    def __repr__(self):
        return f"{type(self).__name__}(in_shape={self.in_shape}, out_shape={self.out_shape})"

    def describe(self) -> dict:
        """JSON-able description (recorded in results and mask files).

        ``args`` holds the constructor arguments (tensors/arrays as a shape/dtype/sha1 digest), so
        :func:`operators.rebuild` can construct the same operator again (passing the tensors back)."""
        d = {"name": self.name, "class": type(self).__name__,
             "module": type(self).__module__, "in_shape": list(self.in_shape),
             "out_shape": list(self.out_shape), "noise": repr(self.noise) if self.noise else None}
        if "_init_args" in self.__dict__:
            d["args"] = self.__dict__["_init_args"]
        return d

    # ---- checks
    def _flatten(self, t, shape, dtype, what):
        if not isinstance(t, torch.Tensor):
            raise OperatorInputError(f"{self.name}: {what} must be a torch.Tensor, got {type(t).__name__}")
        n = len(shape)
        if t.dim() < n or tuple(t.shape[t.dim() - n:]) != shape:
            raise OperatorInputError(
                f"{self.name}: {what} has shape {tuple(t.shape)}; expected (*batch, {', '.join(map(str, shape))})")
        if dtype.is_complex != t.is_complex() or (not t.is_complex() and not t.is_floating_point()):
            kind = "complex" if dtype.is_complex else "real floating-point"
            raise OperatorInputError(f"{self.name}: {what} has dtype {t.dtype}; expected {kind} ({dtype})")
        batch = tuple(t.shape[: t.dim() - n])
        return t.reshape(-1, *shape), batch


class _Adjoint(LinearOperator):
    def __init__(self, op: LinearOperator):
        super().__init__(op.out_shape, op.in_shape)
        self.op, self.name = op, f"{op.name}^H"
        self.in_dtype, self.out_dtype = op.out_dtype, op.in_dtype

    def _forward(self, x):
        return self.op._adjoint(x)

    def _adjoint(self, y):
        return self.op._forward(y)


class Composed(LinearOperator):
    """``(A @ B) x = A(B(x))``; adjoint ``B^H(A^H(y))``."""

    def __init__(self, outer: LinearOperator, inner: LinearOperator):
        if outer.in_shape != inner.out_shape:
            raise OperatorInputError(
                f"cannot compose {outer.name} (input {outer.in_shape}) with {inner.name} (output {inner.out_shape})")
        super().__init__(inner.in_shape, outer.out_shape, noise=outer.noise)
        self.outer, self.inner = outer, inner
        self.name = f"{outer.name}@{inner.name}"
        self.in_dtype, self.out_dtype = inner.in_dtype, outer.out_dtype

    def _forward(self, x):
        return self.outer._forward(self.inner._forward(x))

    def _adjoint(self, y):
        return self.inner._adjoint(self.outer._adjoint(y))

    def from_network(self, out):
        return self.inner.from_network(out)

    @property
    def network_channels(self):
        return self.inner.network_channels


class Scaled(LinearOperator):
    """``(c A) x``; adjoint ``conj(c) A^H``."""

    def __init__(self, op: LinearOperator, c):
        super().__init__(op.in_shape, op.out_shape, noise=op.noise)
        self.op, self.c = op, c
        self.name = f"{c}*{op.name}"
        self.in_dtype, self.out_dtype = op.in_dtype, op.out_dtype

    def _forward(self, x):
        return self.c * self.op._forward(x)

    def _adjoint(self, y):
        c = self.c.conjugate() if isinstance(self.c, complex) else self.c
        return c * self.op._adjoint(y)

    def from_network(self, out):
        return self.op.from_network(out)

    @property
    def network_channels(self):
        return self.op.network_channels


def center_crop(t, hw: Sequence[int]):
    """Crop the last two axes of ``t`` (a tensor or a numpy array) to ``hw`` around the centre, with
    fastMRI's convention (:func:`fastmri.data.transforms.center_crop`: the first kept row is
    ``(H - h) // 2``); a tensor gives a view, an array a C-contiguous copy. ``t`` must be at least ``hw``."""
    h, w = int(hw[0]), int(hw[1])
    H, W = t.shape[-2], t.shape[-1]
    if H < h or W < w:
        raise OperatorInputError(f"cannot crop {tuple(t.shape[-2:])} to {(h, w)}: input is smaller")
    top, left = (H - h) // 2, (W - w) // 2
    out = t[..., top: top + h, left: left + w]
    return np.ascontiguousarray(out) if isinstance(out, np.ndarray) else out
