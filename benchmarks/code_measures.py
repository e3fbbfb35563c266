"""Structural measures of the package source (``mri_oes/``), the same command before and after a
refactor:

    python benchmarks/code_measures.py [--json out.json] [--root DIR]

* ``option_<name>``: files and lines of ``mri_oes/`` that name a network option (what adding or
  changing such an option has to read and touch);
* ``validated_<field>`` / ``defaulted_<field>`` for density, steps, accel: places that refuse a bad
  value (an ``if`` on the name whose body raises, a ``check_<field>`` call, an argparse ``type=`` of a
  ranged parser for the flag) and places that give it a literal default (a keyword-argument default,
  a dataclass field, an argparse ``default=``, a dict entry of a preset or defaults table);
* ``config_classes``: dataclasses of 15 or more fields (option carriers);
* ``translations``: functions that turn one option carrier into another (named in :data:`TRANSLATIONS`,
  each counted where it is defined);
* ``mri_adapters``: functions building a generic ``Problem(..., kind="mri")``;
* ``identity_functions``: functions that build a run's resume identity (a dict returned by a function
  whose name ends in ``identity``, or a method ``identity``);
* ``method_lists``: tuple/list/set literals holding three or more method names;
* ``training_loops``: functions that create ``torch.optim.Adam`` and step it in a loop;
* ``import_cycles``: strongly connected components of the module import graph (every import,
  function-level too);
* ``long_functions``: functions (and methods) over 80 lines.
"""
from __future__ import annotations

import argparse
import ast
import json
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
OPTIONS = ("lr_decay_start", "stop_rule", "density", "init_from")
FIELDS = ("density", "steps", "accel")
METHOD_NAMES = {"dip", "sparse-dip", "oes", "deep-decoder", "conv-decoder", "gp-dip", "oes-mask", "zero-filled",
                "sense", "l1-wavelet"}
#: known converters between option carriers (flags, preset dicts, Settings, RunConfig, Recipe, a command's
#: own keyword arguments), before and after the recipe
TRANSLATIONS = ("grid_run_config", "run_config", "run_settings", "settings", "_transfer_preset", "from_preset",
                "generator_config_for", "recipe_from_args", "recon_recipe", "_transfer_recipe",
                "_preset_network")


def _modules(pkg: Path):
    for f in sorted(pkg.rglob("*.py")):
        yield f, ".".join(f.relative_to(pkg.parent).with_suffix("").parts).removesuffix(".__init__")


def _names(node) -> set:
    out = set()
    for n in ast.walk(node):
        if isinstance(n, ast.Name):
            out.add(n.id)
        elif isinstance(n, ast.Attribute):
            out.add(n.attr)
        elif isinstance(n, ast.keyword) and n.arg:
            out.add(n.arg)
    return out


def _functions(tree):
    for n in ast.walk(tree):
        if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef)):
            yield n


def _literal(v) -> bool:
    return isinstance(v, ast.Constant) and v.value is not None and not isinstance(v.value, str)


def _sccs(edges: dict) -> list:
    """Strongly connected components of more than one module (Tarjan)."""
    index, low, stack, on, sccs, counter = {}, {}, [], set(), [], [0]

    def strong(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in sorted(edges[v]):
            if w not in index:
                strong(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                sccs.append(sorted(comp))

    sys.setrecursionlimit(10000)
    for m in sorted(edges):
        if m not in index:
            strong(m)
    return sccs


def measure(root: Path) -> dict:
    pkg = root / "mri_oes"
    res = {f"option_{o}": {"files": 0, "lines": 0} for o in OPTIONS}
    val = {f: [] for f in FIELDS}
    dflt = {f: [] for f in FIELDS}
    config_classes, translations, adapters, identities, method_lists, loops, long_fns = [], [], [], [], [], [], []
    graph = {}
    for f, mod in _modules(pkg):
        text = f.read_text()
        rel = str(f.relative_to(root))
        for o in OPTIONS:
            n = sum(1 for line in text.splitlines() if re.search(rf"\b{o}\b|--{o.replace('_', '-')}\b", line))
            if n:
                res[f"option_{o}"]["files"] += 1
                res[f"option_{o}"]["lines"] += n
        tree = ast.parse(text)
        graph[mod] = set()
        top = {id(n) for n in tree.body}
        for n in ast.walk(tree):
            if isinstance(n, (ast.ImportFrom, ast.Import)):
                targets = []
                if isinstance(n, ast.ImportFrom):
                    base = mod.split(".")
                    if n.level:
                        base = base[:len(base) - n.level + (1 if f.name == "__init__.py" else 0)]
                        target = ".".join(base + ([n.module] if n.module else []))
                    else:
                        target = n.module or ""
                    targets = [f"{target}.{a.name}" for a in n.names] + [target]
                else:
                    targets = [a.name for a in n.names]
                graph[mod].add((tuple(targets), id(n) in top))
            elif isinstance(n, ast.If) and any(isinstance(b, ast.Raise) for b in ast.walk(ast.Module(n.body, []))):
                names = _names(n.test)
                for fld in FIELDS:
                    if fld in names or f"mask_{fld}" in names:
                        val[fld].append(f"{rel}:{n.lineno}")
            elif isinstance(n, ast.Call):
                fn = n.func.attr if isinstance(n.func, ast.Attribute) else getattr(n.func, "id", "")
                for fld in FIELDS:
                    if fn == f"check_{fld}":
                        val[fld].append(f"{rel}:{n.lineno}")
                if fn == "add_argument" and n.args and isinstance(n.args[0], ast.Constant):
                    flag = str(n.args[0].value)
                    kw = {k.arg: k.value for k in n.keywords}
                    for fld in FIELDS:
                        if flag == f"--{fld}":
                            if "type" in kw and not (isinstance(kw["type"], ast.Name) and kw["type"].id in ("int", "float")):
                                val[fld].append(f"{rel}:{n.lineno} (argparse type)")
                            if "default" in kw and _literal(kw["default"]):
                                dflt[fld].append(f"{rel}:{n.lineno} (argparse)")
                if fn == "Problem" and any(k.arg == "kind" and isinstance(k.value, ast.Constant) and
                                           k.value.value == "mri" for k in n.keywords):
                    adapters.append(f"{rel}:{n.lineno}")
                for k in n.keywords:   # a literal passed as a default-bearing keyword: d.get("density", 0.05)
                    pass
            elif isinstance(n, ast.Dict):
                for k, v in zip(n.keys, n.values):
                    if isinstance(k, ast.Constant) and k.value in FIELDS and _literal(v):
                        dflt[k.value].append(f"{rel}:{n.lineno} (dict)")
            elif isinstance(n, (ast.Tuple, ast.List, ast.Set)):
                names = {e.value for e in n.elts if isinstance(e, ast.Constant) and isinstance(e.value, str)}
                if len(names & METHOD_NAMES) >= 3:
                    method_lists.append(f"{rel}:{n.lineno}")
            elif isinstance(n, ast.ClassDef):
                is_dc = any("dataclass" in ast.unparse(d) for d in n.decorator_list)
                fields = [s for s in n.body if isinstance(s, ast.AnnAssign)]
                if is_dc and len(fields) >= 15:
                    config_classes.append(f"{rel}:{n.name} ({len(fields)} fields)")
                if is_dc:
                    for s in fields:
                        if isinstance(s.target, ast.Name) and s.target.id in FIELDS and s.value is not None \
                                and _literal(s.value):
                            dflt[s.target.id].append(f"{rel}:{s.lineno} (field)")
        for fn in _functions(tree):
            length = fn.end_lineno - fn.lineno + 1
            if length > 80:
                long_fns.append(f"{rel}:{fn.name} ({length})")
            a = fn.args
            pos = a.posonlyargs + a.args
            for arg, d in list(zip(pos[len(pos) - len(a.defaults):], a.defaults)) + \
                    [(k, d) for k, d in zip(a.kwonlyargs, a.kw_defaults) if d is not None]:
                if arg.arg in FIELDS and _literal(d):
                    dflt[arg.arg].append(f"{rel}:{fn.lineno} ({fn.name})")
            if fn.name in TRANSLATIONS:
                translations.append(f"{rel}:{fn.name}")
            if fn.name.endswith("identity") and fn.name not in ("check_identity",) and any(
                    isinstance(r, ast.Return) and r.value is not None for r in ast.walk(fn)):
                identities.append(f"{rel}:{fn.name}")
            src = ast.unparse(fn)
            if "optim.Adam(" in src and re.search(r"\bfor step in range", src) and ".step()" in src:
                loops.append(f"{rel}:{fn.name}")
    mods = set(graph)

    def resolve(targets):   # `from . import x`: the submodule x if it is one, else the module named
        for t in targets:
            if t in mods:
                return t
        return None

    cycles = {}
    for label, top_only in (("import_cycles_module_level", True), ("import_cycles", False)):
        edges = {m: {resolve(t) for t, top in graph[m] if top or not top_only} - {None, m} for m in mods}
        cycles[label] = _sccs(edges)
    res.update({f"validated_{k}": v for k, v in val.items()})
    res.update({f"defaulted_{k}": v for k, v in dflt.items()})
    res.update(config_classes=config_classes, translations=translations, mri_adapters=adapters,
               identity_functions=identities, method_lists=method_lists, training_loops=loops,
               long_functions=long_fns, **cycles)
    return res


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--root", default=str(ROOT), help="repository root (default: this checkout)")
    ap.add_argument("--json", default=None, help="also write the measures here")
    args = ap.parse_args(argv)
    res = measure(Path(args.root))
    for k, v in res.items():
        if isinstance(v, dict):
            print(f"{k:<24} {v['files']} files, {v['lines']} lines")
        else:
            print(f"{k:<24} {len(v):>3}  " + "; ".join(map(str, v)))
    if args.json:
        Path(args.json).write_text(json.dumps(res, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
