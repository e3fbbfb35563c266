"""A block-diagonal stack of operators over one generator output batch (multi-image LIP / IMP)."""
from __future__ import annotations

import math
from typing import Sequence

import torch

from .base import LinearOperator, OperatorInputError


class Stacked(LinearOperator):
    """Several operators over one generator output batch.

    * ``shared_input=False``: input ``(B, *in_shape_i)`` — image ``i`` goes to operator ``i``
      (block-diagonal); :meth:`from_network` maps a generator batch ``(B, C, Hg, Wg)`` (one ``z`` per
      image) to ``(1, B, *in_shape_i)``.
    * ``shared_input=True``: input ``in_shape_i`` — the same image goes to every operator; the adjoint
      sums the operators' adjoints.

    Output: the flattened measurements of all operators concatenated (:meth:`stack_measurements`).
    The adjoint is exact (tested against ``<Ax, y> = <x, A^H y>``)."""

    name = "stacked"

    def __init__(self, ops: Sequence[LinearOperator], shared_input: bool = False):
        ops = list(ops)
        if not ops:
            raise OperatorInputError("stacked: needs at least one operator")
        s0 = ops[0].in_shape
        for op in ops[1:]:
            if op.in_shape != s0:
                raise OperatorInputError(f"stacked: operators take different image shapes "
                                         f"({s0} vs {op.in_shape}); one network needs one image grid")
            if op.in_dtype != ops[0].in_dtype or op.out_dtype != ops[0].out_dtype:
                raise OperatorInputError("stacked: operators must share input and output dtypes")
        self.ops, self.shared_input = ops, bool(shared_input)
        self.in_dtype, self.out_dtype = ops[0].in_dtype, ops[0].out_dtype
        self._sizes = [math.prod(op.out_shape) for op in ops]
        in_shape = s0 if self.shared_input else (len(ops),) + s0
        super().__init__(in_shape, (sum(self._sizes),))

    def _forward(self, x):
        n = x.shape[0]
        parts = [op._forward(x if self.shared_input else x[:, i]).reshape(n, -1)
                 for i, op in enumerate(self.ops)]
        return torch.cat(parts, dim=1)

    def _adjoint(self, y):
        n = y.shape[0]
        outs = [op._adjoint(part.reshape(n, *op.out_shape))
                for op, part in zip(self.ops, torch.split(y, self._sizes, dim=1))]
        return torch.stack(outs, 0).sum(0) if self.shared_input else torch.stack(outs, 1)

    def from_network(self, out):
        if self.shared_input:
            return self.ops[0].from_network(out)
        if out.shape[0] != len(self.ops):
            raise OperatorInputError(f"stacked: generator batch {out.shape[0]} != {len(self.ops)} images "
                                     "(one z per image)")
        return torch.stack([op.from_network(out[i:i + 1])[0] for i, op in enumerate(self.ops)], 0)[None]

    @property
    def network_channels(self):
        return self.ops[0].network_channels

    def stack_measurements(self, ys: Sequence[torch.Tensor]) -> torch.Tensor:
        """Concatenate per-operator measurements (each ``out_shape_i``, optional leading 1) into ``y``."""
        if len(ys) != len(self.ops):
            raise OperatorInputError(f"stacked: {len(ys)} measurements for {len(self.ops)} operators")
        parts = []
        for op, y in zip(self.ops, ys):
            if tuple(y.shape[-len(op.out_shape):]) != op.out_shape or y.numel() != math.prod(op.out_shape):
                raise OperatorInputError(f"stacked: measurement shape {tuple(y.shape)} does not match "
                                         f"operator output {op.out_shape}")
            parts.append(y.reshape(-1))
        return torch.cat(parts)

    def to(self, device):
        for op in self.ops:
            op.to(device)
        return self

    @property
    def device(self):
        return self.ops[0].device

    def describe(self):
        return {**super().describe(), "shared_input": self.shared_input,
                "ops": [op.describe() for op in self.ops]}
