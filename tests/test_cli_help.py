"""Every command documents every option and shows one example that its own parser accepts; the
app has --version; validation errors come all at once; farm jobfiles keeps the job's own files."""

from __future__ import annotations

import re
import shlex

import pytest
import typer
import yaml
from typer.testing import CliRunner

import synthloop
from synthloop.cli import app

runner = CliRunner()


def _commands(cmd, path=()):
    if hasattr(cmd, "commands"):
        for name, sub in cmd.commands.items():
            yield from _commands(sub, (*path, name))
    else:
        yield path, cmd


COMMANDS = list(_commands(typer.main.get_command(app)))


def test_every_option_has_help_and_every_command_an_example_its_parser_accepts():
    assert len(COMMANDS) > 30
    missing, bad = [], []
    for path, cmd in COMMANDS:
        name = " ".join(path)
        for p in cmd.params:
            if p.name != "help" and not (getattr(p, "help", None) or "").strip():
                missing.append(f"{name} {p.opts[0] if p.param_type_name == 'option' else p.name.upper()}")
        m = re.search(r"Example: (synthloop .+)", cmd.help or "")
        if m is None:
            bad.append(f"{name}: no example")
            continue
        args = shlex.split(m.group(1))[1:]
        if args[: len(path)] != list(path):
            bad.append(f"{name}: example runs {' '.join(args[: len(path)])}")
            continue
        try:
            cmd.make_context(name, args[len(path) :], resilient_parsing=False)
        except Exception as e:  # noqa: BLE001 - click's usage errors
            bad.append(f"{name}: {type(e).__name__}: {e}")
    assert not missing, missing
    assert not bad, bad


def test_version():
    r = runner.invoke(app, ["--version"])
    assert r.exit_code == 0 and r.output.strip() == f"synthloop {synthloop.__version__}"


def test_spec_errors_listed_all_at_once(tmp_path):
    spec = {"datasets": [{"kind": "real", "coco_json": "x.json"}], "epochs": -1, "batch_size": 0, "bogus": 1}
    (tmp_path / "bad.yaml").write_text(yaml.safe_dump(spec))
    r = runner.invoke(app, ["train", str(tmp_path / "bad.yaml"), "--out", str(tmp_path / "run")])
    assert r.exit_code == 2
    lines = [ln for ln in r.output.splitlines() if ln.startswith("error: ")]
    fields = {ln.split(": ")[2] for ln in lines}
    assert {"epochs", "batch_size", "bogus"} <= fields, r.output
    assert all(ln.startswith(f"error: {tmp_path / 'bad.yaml'}: ") for ln in lines)


def test_recipe_errors_listed_all_at_once(tmp_path):
    (tmp_path / "r.yaml").write_text("name: r\nnot_a_field: 1\nalso_not: 2\n")
    r = runner.invoke(app, ["recipes", "validate", str(tmp_path / "r.yaml")])
    assert r.exit_code == 2
    assert "not_a_field" in r.output and "also_not" in r.output


@pytest.mark.parametrize("own", ["job.yaml", "recipe.yaml", "shards/0000/x.sh"])
def test_farm_jobfiles_refuses_the_jobs_own_files(tmp_path, own):
    job = tmp_path / "job"
    r = runner.invoke(
        app, ["farm", "plan", "--recipe", "shapes", "--frames", "4", "--shards", "2", "--out", str(job)]
    )
    assert r.exit_code == 0, r.output
    before = (job / "job.yaml").read_bytes()
    r = runner.invoke(app, ["farm", "jobfiles", str(job), "--k8s", str(job / own)])
    assert r.exit_code == 2 and "refusing to overwrite" in r.output
    assert (job / "job.yaml").read_bytes() == before
    r = runner.invoke(app, ["farm", "jobfiles", str(job), "--k8s", str(tmp_path / "k8s.yaml")])
    assert r.exit_code == 0 and (tmp_path / "k8s.yaml").is_file()
