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
    """Every python block of the API section (up to its plugin subsection) runs in order, as a user would
    paste them: mri_oes.reconstruct on a brain (shared, or the bundled one), from an array with a
    sampling mask, and the natural-image building blocks."""
    api = _section("Python API").split("### ")[0]
    blocks = re.findall(r"```python\n(.*?)```", api, re.S)
    assert len(blocks) >= 3, "README's Python API section lost an example"
    ns = {}
    for block in blocks:
        exec(compile(block, "README.md", "exec"), ns)   # noqa: S102 - our own README
    image, record = ns["image"], ns["record"]
    assert image.ndim == 2 and record["method"] == "l1-wavelet" and record["final"]["psnr"] > 25
    assert ns["rec"]["method"] == "sense" and ns["rec"]["final"]["psnr"] > 20 and ns["sense"].shape == image.shape
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
def test_readme_commands_parse(cmd, monkeypatch, capsys):
    """Every `mri-oes ...` line in README parses with the real CLI (no unknown flag, no deprecated name)."""
    from mri_oes.cli import build_parser
    argv = shlex.split(cmd)[1:]
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as e:
        assert e.code == 0, f"README command does not parse: {cmd}"
        return
    assert "deprecated" not in capsys.readouterr().err, f"README uses a deprecated flag name: {cmd}"
    assert getattr(args, "func", None) is not None or argv in (["--help"], ["--version"])


def test_readme_names_no_one_machine_and_no_internal_document():
    text = README.read_text()
    for word in ("/work/", "/home/", "/root/", "AVX", "SPEC.md", "these machines", "this CPU"):
        assert word not in text, f"README mentions {word!r}"
