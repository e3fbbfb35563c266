"""State files that cannot run code: safetensors tensors + a JSON tree, with the run's identity.

Checkpoints, IMP rewind weights and every other saved training state go through this module; nothing
in the toolkit unpickles a file (``torch.load(weights_only=False)`` on a file from a shared or
downloaded run folder executes whatever the file says).

A state file is one ``.safetensors`` file:

* tensors: every tensor leaf of the tree (moved to the CPU; complex tensors stored through
  :func:`torch.view_as_real`), named ``t0, t1, ...``;
* metadata (safetensors' string header, read WITHOUT reading any tensor):
  ``format`` = ``mri_oes.state/1``, ``identity`` = canonical JSON of the run identity,
  ``identity_digest`` = its sha256, ``tree`` = the JSON tree with placeholders for the tensors.

The tree may hold dicts (any str/int/float/bool/None keys), lists, tuples, ints, floats (NaN/Inf
included), bools, strings, ``None``, tensors (``torch.Generator`` states are uint8 tensors;
optimizer ``state_dict()`` s are such trees) and numpy arrays.

The identity is a JSON dict of everything that determines the result (input data digest, operator
and its parameters, method, every hyperparameter, seed, generator config, mask digest, versions).
:func:`load_state` compares it with the expected identity from the file's header BEFORE any tensor is
read and raises :class:`mri_oes.errors.RunMismatch` naming the keys that differ.
"""
from __future__ import annotations

import hashlib
import json
import math
from pathlib import Path
from typing import Any, Dict, List, Optional

import numpy as np
import torch

from .errors import RunMismatch, StateFileError
from .io import atomic_path

FORMAT = "mri_oes.state/1"
#: largest total tensor size (bytes) a state file may declare; checked from its header before loading
MAX_STATE_BYTES = 1 << 29
#: largest safetensors JSON header (bytes: tensor table + metadata) read
MAX_SAFETENSORS_HEADER = 64 << 20
#: bytes per element of each safetensors dtype
SAFETENSORS_DTYPES = {"BOOL": 1, "U8": 1, "I8": 1, "F8_E5M2": 1, "F8_E4M3": 1, "I16": 2, "U16": 2, "F16": 2,
                      "BF16": 2, "I32": 4, "U32": 4, "F32": 4, "I64": 8, "U64": 8, "F64": 8, "C64": 8}
_TAG = "__mri_oes__"   # marks encoded (non-JSON) values inside the tree


# ----------------------------------------------------------------------------------- digests
def canonical(obj: Any) -> Any:
    """A JSON-able, canonical copy of ``obj``: tuples → lists, paths → str, numpy scalars → Python,
    non-finite floats → ``"nan"``/``"inf"``/``"-inf"``, dict keys → str, tensors → their digest."""
    if isinstance(obj, dict):
        return {str(k): canonical(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [canonical(v) for v in obj]
    if isinstance(obj, bool) or obj is None or isinstance(obj, str):
        return obj
    if isinstance(obj, (np.bool_,)):
        return bool(obj)
    if isinstance(obj, (int, np.integer)):
        return int(obj)
    if isinstance(obj, (float, np.floating)):
        f = float(obj)
        return f if math.isfinite(f) else str(f)
    if isinstance(obj, Path):
        return str(obj)
    if isinstance(obj, (torch.Tensor, np.ndarray)):
        return "sha256:" + tensor_digest(obj)
    if isinstance(obj, torch.device):
        return str(obj)
    if hasattr(obj, "to_dict"):
        return canonical(obj.to_dict())
    return str(obj)


def canonical_json(obj: Any) -> str:
    return json.dumps(canonical(obj), sort_keys=True, separators=(",", ":"), allow_nan=False)


def identity_digest(obj: Any) -> str:
    """sha256 (hex) of the canonical JSON of ``obj``."""
    return hashlib.sha256(canonical_json(obj).encode()).hexdigest()


def tensor_digest(*tensors) -> str:
    """sha256 (hex) over dtype, shape and bytes of one or more tensors / numpy arrays (or lists of
    them, or ``{name: tensor}`` dicts, hashed in key order)."""
    h = hashlib.sha256()

    def feed(t):
        if t is None:
            h.update(b"None")
            return
        if isinstance(t, dict):
            for k in sorted(t, key=str):
                h.update(str(k).encode())
                feed(t[k])
            return
        if isinstance(t, (list, tuple)):
            for x in t:
                feed(x)
            return
        if isinstance(t, torch.Tensor):
            t = t.detach().cpu().contiguous()
            if t.is_complex():
                t = torch.view_as_real(t).contiguous()
            if t.dtype == torch.bfloat16:
                t = t.float()
            a = t.numpy()
        else:
            a = np.ascontiguousarray(np.asarray(t))
        h.update(f"{a.dtype.str}{tuple(a.shape)}".encode())
        h.update(a.tobytes())

    for t in tensors:
        feed(t)
    return h.hexdigest()


def file_digest(path, chunk: int = 1 << 20) -> str:
    """sha256 (hex) of a file's bytes."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(chunk), b""):
            h.update(block)
    return h.hexdigest()


def _flatten(d: Any, prefix: str = "") -> Dict[str, Any]:
    if isinstance(d, dict):
        out = {}
        for k, v in d.items():
            out.update(_flatten(v, f"{prefix}.{k}" if prefix else str(k)))
        if not d and prefix:
            out[prefix] = {}
        return out
    return {prefix: d}


def identity_diff(expected: dict, found: dict) -> List[str]:
    """Dotted keys whose values differ between two identities (missing on one side counts)."""
    a, b = _flatten(canonical(expected or {})), _flatten(canonical(found or {}))
    return sorted(k for k in set(a) | set(b) if a.get(k, _MISSING) != b.get(k, _MISSING))


class _Missing:
    def __repr__(self):
        return "(absent)"


_MISSING = _Missing()


def _short(v, n=60):
    s = json.dumps(v, sort_keys=True) if not isinstance(v, _Missing) else repr(v)
    return s if len(s) <= n else s[:n - 3] + "..."


def check_identity(path, expected: dict, found: dict, what: str = "state file") -> None:
    """Raise :class:`RunMismatch` naming the differing keys (with both values) unless equal."""
    keys = identity_diff(expected, found)
    if keys:
        a, b = _flatten(canonical(expected or {})), _flatten(canonical(found or {}))
        shown = "; ".join(f"{k}: this run {_short(a.get(k, _MISSING))}, saved {_short(b.get(k, _MISSING))}"
                          for k in keys[:4])
        more = f" (+{len(keys) - 4} more: {', '.join(keys[4:10])})" if len(keys) > 4 else ""
        raise RunMismatch(f"{path}: this {what} belongs to another run (differs in {', '.join(keys[:4])}"
                          f"{'...' if len(keys) > 4 else ''}: {shown}{more}); use another output folder "
                          "or --overwrite", keys=keys, path=path)


# ------------------------------------------------------------------------------ tree encoding
def _encode(obj, tensors: Dict[str, torch.Tensor]):
    if isinstance(obj, torch.Tensor):
        t = obj.detach().cpu()
        cplx = t.is_complex()
        if cplx:
            t = torch.view_as_real(t)
        key = f"t{len(tensors)}"
        tensors[key] = t.clone().contiguous()   # clone: safetensors refuses shared storage
        return {_TAG: "tensor", "key": key, "complex": cplx}
    if isinstance(obj, np.ndarray):
        enc = _encode(torch.from_numpy(np.ascontiguousarray(obj)), tensors)
        enc[_TAG] = "ndarray"
        return enc
    if isinstance(obj, torch.Generator):
        raise StateFileError("store a torch.Generator's get_state() (a uint8 tensor), not the generator")
    if isinstance(obj, bool) or obj is None or isinstance(obj, str):
        return obj
    if isinstance(obj, (np.bool_,)):
        return bool(obj)
    if isinstance(obj, (int, np.integer)):
        return int(obj)
    if isinstance(obj, (float, np.floating)):
        f = float(obj)
        return f if math.isfinite(f) else {_TAG: "float", "v": str(f)}
    if isinstance(obj, tuple):
        return {_TAG: "tuple", "v": [_encode(v, tensors) for v in obj]}
    if isinstance(obj, list):
        return [_encode(v, tensors) for v in obj]
    if isinstance(obj, dict):
        if all(isinstance(k, str) for k in obj) and _TAG not in obj:
            return {k: _encode(v, tensors) for k, v in obj.items()}
        return {_TAG: "dict", "items": [[_encode(k, tensors), _encode(v, tensors)] for k, v in obj.items()]}
    if isinstance(obj, torch.dtype):
        return {_TAG: "dtype", "v": str(obj).replace("torch.", "")}
    raise StateFileError(f"cannot store a {type(obj).__name__} in a state file")


def _decode(obj, get, path):
    if isinstance(obj, list):
        return [_decode(v, get, path) for v in obj]
    if not isinstance(obj, dict):
        return obj
    tag = obj.get(_TAG)
    if tag is None:
        return {k: _decode(v, get, path) for k, v in obj.items()}
    if tag in ("tensor", "ndarray"):
        t = get(obj["key"])
        if obj.get("complex"):
            if t.shape[-1:] != (2,) or not t.is_floating_point():
                raise StateFileError(f"{path}: complex tensor {obj['key']} is not stored as (..., 2) floats")
            t = torch.view_as_complex(t.contiguous())
        return t.numpy() if tag == "ndarray" else t
    if tag == "float":
        if obj.get("v") not in ("nan", "inf", "-inf"):
            raise StateFileError(f"{path}: bad encoded float {obj.get('v')!r}")
        return float(obj["v"])
    if tag == "tuple":
        return tuple(_decode(v, get, path) for v in obj["v"])
    if tag == "dict":
        return {_decode(k, get, path): _decode(v, get, path) for k, v in obj["items"]}
    if tag == "dtype":
        dt = getattr(torch, str(obj["v"]), None)
        if not isinstance(dt, torch.dtype):
            raise StateFileError(f"{path}: unknown dtype {obj['v']!r}")
        return dt
    raise StateFileError(f"{path}: unknown entry type {tag!r} in the state tree")


# ------------------------------------------------------------------------------------ files
def save_state(path, tree: Any, identity: dict) -> Path:
    """Write ``tree`` with ``identity`` to ``path`` (safetensors), atomically."""
    from safetensors.torch import save_file
    path = Path(path)
    tensors: Dict[str, torch.Tensor] = {}
    enc = _encode(tree, tensors)
    meta = {"format": FORMAT, "identity": canonical_json(identity), "identity_digest": identity_digest(identity),
            "tree": json.dumps(enc, separators=(",", ":"), allow_nan=False)}
    with atomic_path(path, suffix=".safetensors") as tmp:
        save_file(tensors, str(tmp), metadata=meta)
    return path


def check_safetensors(path, max_bytes: int, what: str = "state file", max_elements: Optional[int] = None,
                      error=StateFileError) -> dict:
    """Read and check a safetensors file's header WITHOUT loading any tensor: a regular file; header
    length within :data:`MAX_SAFETENSORS_HEADER` and the file; every tensor's dtype known, shape
    consistent with its byte range, ranges inside the file; the total at most ``max_bytes`` (and
    ``max_elements`` entries). Returns the parsed header; every failure is one ``error`` naming the
    file and the limit."""
    import struct
    from .errors import UserError
    from .io import check_regular_file, loads_bounded
    path = Path(path)
    try:
        st = check_regular_file(path, what)
    except UserError as e:
        raise error(str(e)) from None
    try:
        with open(path, "rb") as f:
            head = f.read(8)
            if len(head) < 8:
                raise error(f"{path}: not a readable {what} (not safetensors: {st.st_size} bytes)")
            (n,) = struct.unpack("<Q", head)
            if n > MAX_SAFETENSORS_HEADER or n > st.st_size - 8:
                raise error(f"{path}: not a readable {what} (its safetensors header declares {n:,} bytes; "
                            f"file {st.st_size:,} bytes, limit {MAX_SAFETENSORS_HEADER:,})")
            raw = f.read(n)
    except OSError as e:
        raise error(f"{what} {path}: cannot be read ({e.strerror or e})") from None
    try:
        header = loads_bounded(raw, f"{what} {path} header", max_bytes=MAX_SAFETENSORS_HEADER, max_depth=8)
    except UserError as e:
        raise error(f"{path}: not a readable {what} ({e})") from None
    if not isinstance(header, dict):
        raise error(f"{what} {path}: safetensors header is not a JSON object")
    data_len = st.st_size - 8 - n
    total = elements = 0
    for name, t in header.items():
        if name == "__metadata__":
            if not isinstance(t, dict) or not all(isinstance(v, str) for v in t.values()):
                raise error(f"{what} {path}: safetensors metadata is not a string map")
            continue
        if not isinstance(t, dict) or t.get("dtype") not in SAFETENSORS_DTYPES:
            raise error(f"{what} {path}: tensor {name!r} has no known dtype")
        shape, off = t.get("shape"), t.get("data_offsets")
        if not (isinstance(shape, list) and all(isinstance(d, int) and not isinstance(d, bool) and d >= 0
                                                for d in shape)
                and isinstance(off, list) and len(off) == 2 and all(isinstance(o, int) for o in off)):
            raise error(f"{what} {path}: tensor {name!r} has a malformed shape or byte range")
        numel = math.prod(shape)
        nbytes = numel * SAFETENSORS_DTYPES[t["dtype"]]
        if not 0 <= off[0] <= off[1] <= data_len or off[1] - off[0] != nbytes:
            raise error(f"{what} {path}: tensor {name!r} ({t['dtype']} {shape}) does not match its byte range "
                        f"{off} in a data section of {data_len:,} bytes (truncated or forged file)")
        total += nbytes
        elements += numel
        if total > max_bytes or (max_elements is not None and elements > max_elements):
            lim = (f"{max_elements:,} entries" if max_elements is not None and elements > max_elements
                   else f"{max_bytes:,} bytes")
            raise error(f"{what} {path}: its tensors declare more than the limit of {lim} (refused before "
                        "loading)")
    return header


def _header(path) -> dict:
    from safetensors import safe_open
    path = Path(path)
    if not path.is_file():
        raise StateFileError(f"state file not found: {path}")
    check_safetensors(path, MAX_STATE_BYTES, "state file")
    try:
        with safe_open(str(path), framework="pt") as f:
            meta = dict(f.metadata() or {})
    except Exception as e:  # safetensors raises its own error types for garbage
        raise StateFileError(f"{path}: not a readable state file (safetensors: {e})") from None
    if meta.get("format") != FORMAT:
        raise StateFileError(f"{path}: not a mri_oes state file (format {meta.get('format')!r})")
    return meta


def read_identity(path) -> dict:
    """The identity stored in ``path``'s header (no tensor is read)."""
    meta = _header(path)
    try:
        ident = json.loads(meta["identity"])
    except (KeyError, ValueError, RecursionError) as e:
        raise StateFileError(f"{path}: state file identity is not JSON ({e})") from None
    if not isinstance(ident, dict):
        raise StateFileError(f"{path}: state file identity is not a JSON object")
    return ident


def load_state(path, expect_identity: Optional[dict], device=None, what: str = "state file") -> Any:
    """The tree stored in ``path``, after checking its identity equals ``expect_identity`` (raises
    :class:`RunMismatch` naming the differing keys; ``None`` skips the check). Tensors are loaded to
    ``device`` (default CPU)."""
    from safetensors import safe_open
    path = Path(path)
    meta = _header(path)
    if expect_identity is not None:
        try:
            check_identity(path, expect_identity, read_identity(path), what=what)
        except RecursionError:
            raise StateFileError(f"{path}: state file identity is nested too deeply") from None
    try:
        tree = json.loads(meta["tree"])
    except (KeyError, ValueError, RecursionError) as e:
        raise StateFileError(f"{path}: state tree is not JSON ({e})") from None
    dev = str(device) if device is not None else "cpu"
    try:
        with safe_open(str(path), framework="pt", device=dev) as f:
            keys = set(f.keys())

            def get(k):
                if k not in keys:
                    raise StateFileError(f"{path}: state tree refers to missing tensor {k!r}")
                return f.get_tensor(k)

            return _decode(tree, get, path)
    except StateFileError:
        raise
    except RecursionError:
        raise StateFileError(f"{path}: state tree is nested too deeply") from None
    except Exception as e:
        raise StateFileError(f"{path}: cannot read the state tensors ({e})") from None
