"""Every subcommand's --help is plain text (no RST markup, no doubled percent signs), describes every
option, and shows the values a run uses (recon: resolved from mri_oes.mri.presets, not argparse
placeholders). Renamed flags keep working for one release with one deprecation line."""
import argparse
import re

import pytest

from mri_oes.cli import build_parser, main


def _subparsers():
    p = build_parser()
    sub = next(a for a in p._actions if isinstance(a, argparse._SubParsersAction))
    return sub.choices


SUBCOMMANDS = sorted(_subparsers())


@pytest.mark.parametrize("name", SUBCOMMANDS)
def test_help_is_plain_text_and_describes_every_option(name, capsys):
    with pytest.raises(SystemExit) as e:
        build_parser().parse_args([name, "--help"])
    assert e.value.code == 0
    text = capsys.readouterr().out
    assert "%%" not in text, f"{name} --help prints a doubled percent sign"
    assert "``" not in text, f"{name} --help prints RST double backticks"
    for role in (":data:", ":func:", ":class:", ":meth:", ":mod:"):
        assert role not in text, f"{name} --help prints the RST role {role}"
    assert "SPEC" not in text and "§" not in text, f"{name} --help cites an internal document"
    parser = _subparsers()[name]
    missing = [a.option_strings[0] for a in parser._actions
               if a.option_strings and a.help != argparse.SUPPRESS and not (a.help or "").strip()]
    assert not missing, f"{name}: options without help text: {missing}"


def test_task_shortcuts_list_only_their_task_flags(capsys):
    helps = {}
    for name in ("denoise", "inpaint", "super-resolve"):
        with pytest.raises(SystemExit):
            build_parser().parse_args([name, "--help"])
        helps[name] = capsys.readouterr().out
    assert "--keep-fraction" not in helps["denoise"] and "--factor" not in helps["denoise"]
    assert "--keep-fraction" in helps["inpaint"] and "--factor" not in helps["inpaint"]
    assert "--factor" in helps["super-resolve"] and "--keep-fraction" not in helps["super-resolve"]


def test_recon_help_shows_the_preset_values(capsys):
    from mri_oes.mri.presets import for_accel, get
    with pytest.raises(SystemExit):
        build_parser().parse_args(["recon", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    cpu4, cpu8 = for_accel(get("cpu"), 4), for_accel(get("cpu"), 8)
    floor = re.search(r"--min-layer-density MIN_LAYER_DENSITY (.*?) --scope", text).group(1)
    assert f"cpu: 4x {cpu4['min_layer_density']:g}, 8x {cpu8['min_layer_density']:g}" in floor
    assert "default 0)" not in floor
    levels = re.search(r"--levels LEVELS (.*?) --width", text).group(1)
    assert f"cpu: {get('cpu')['levels']}" in levels and "at most 6)" not in levels
    steps = re.search(r"--steps STEPS (.*?) --lr", text).group(1)
    assert f"4x {cpu4['steps']}" in steps and f"8x {cpu8['steps']}" in steps


@pytest.mark.parametrize("old,new,argv,dest,value", [
    ("--mask", "--pruning-mask", ["fit", "--mask", "m.safetensors"], "mask_path", "m.safetensors"),
    ("--lam", "--kl-weight", ["fit", "--lam", "0.5"], "lam", 0.5),
    ("--lamda", "--reg-weight", ["recon", "x.h5", "--method", "sense", "--lamda", "0.02"], "lamda", 0.02),
    ("--accels", "--accel", ["transfer", "--accels", "4"], "accels", [4]),
    ("--densities", "--density", ["transfer", "--densities", "0.5", "0.2"], "densities", [0.5, 0.2]),
    ("--mask-sources", "--mask-source", ["transfer", "--mask-sources", "oes"], "mask_sources", ["oes"]),
])
def test_old_flag_names_work_with_one_deprecation_line(old, new, argv, dest, value, capsys):
    args = build_parser().parse_args(argv)
    assert getattr(args, dest) == value
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and old in err[0] and new in err[0] and "deprecated" in err[0]
    # the new name: same destination, no notice
    args = build_parser().parse_args([new if a == old else a for a in argv])
    assert getattr(args, dest) == value and capsys.readouterr().err == ""


@pytest.mark.parametrize("command", ["fit", "learn-mask", "imp", "prune-at-init"])
def test_operator_plugin_flags_on_every_natural_training_command(command):
    parser = _subparsers()[command]
    flags = {s for a in parser._actions for s in a.option_strings}
    assert {"--operator", "--operator-args"} <= flags


@pytest.mark.parametrize("command", ["fit", "imp", "prune-at-init", "transfer", "recon", "demo"])
def test_checkpoint_every_on_every_checkpointing_command(command):
    parser = _subparsers()[command]
    assert "--checkpoint-every" in {s for a in parser._actions for s in a.option_strings}
