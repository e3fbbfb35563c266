"""The README's Python API example runs verbatim, and its commands use only flags that exist."""
import re
import shlex
from pathlib import Path

import pytest

README = Path(__file__).resolve().parents[1] / "README.md"


def _section(title):
    text = README.read_text()
    start = text.index(f"## {title}")
    nxt = text.find("\n## ", start + 1)
    return text[start: nxt if nxt > 0 else None]


def test_python_api_example_runs_verbatim():
    blocks = re.findall(r"```python\n(.*?)```", _section("Python API"), re.S)
    assert blocks, "README has no python block under '## Python API'"
    ns = {}
    exec(compile(blocks[0], "README.md", "exec"), ns)   # noqa: S102 - our own README
    res, mask = ns["res"], ns["mask"]
    assert 0 < mask.density < 0.1 and res.final_metrics["psnr"] > 15


def _commands():
    text = README.read_text()
    cmds = []
    for block in re.findall(r"```bash\n(.*?)```", text, re.S):
        for line in block.replace("\\\n", " ").splitlines():
            line = line.split("#")[0].strip()
            if line.startswith("mri-oes ") and "..." not in line and "|" not in line:
                cmds.append(line)
    return cmds


@pytest.mark.parametrize("cmd", _commands())
def test_readme_commands_parse(cmd, monkeypatch):
    """Every `mri-oes ...` line in README parses with the real CLI (no unknown or renamed flag)."""
    from mri_oes.cli import build_parser
    argv = shlex.split(cmd)[1:]
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as e:
        assert e.code == 0, f"README command does not parse: {cmd}"
        return
    assert getattr(args, "func", None) is not None or argv in (["--help"], ["--version"])
