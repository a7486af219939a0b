"""The command line (scripts/engine_factory/__main__.py, ops/): every command is a module of ops/ with its own parser,
listed once in ops.COMMANDS; a stage's `run` builds no other parser; refusals are FactoryError types whose exit status
the one handler (errors.guarded) returns."""

import errno
import subprocess
import sys

import pytest

from engine_factory import errors
from engine_factory.__main__ import main, parser_for
from engine_factory.ops import COMMANDS, command

from helpers import REPO, cli


def test_every_command_is_one_module_listed_once_and_help_shows_that_list():
    for name in COMMANDS:
        module = command(name)
        assert callable(module.add_parser) and callable(module.main), name
    choices = parser_for(["-h"])._subparsers._group_actions[0].choices
    assert list(choices) == list(COMMANDS)
    assert "ended" not in COMMANDS  # the rules never called it: a job's signal is noted by jobs.execute
    top = cli("-h").stdout
    assert all(f"\n    {name}" in top for name in COMMANDS) and " ended " not in top


def test_a_stage_builds_only_runs_parser_and_imports_no_other_command():
    code = (
        "import sys\nfrom engine_factory.__main__ import parser_for\n"
        "p = parser_for(['run', 'demo', '{}', '{}'])\n"
        "print(sorted(p._subparsers._group_actions[0].choices))\n"
        "print(sorted(m for m in sys.modules if m.startswith('engine_factory.ops.')))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, timeout=120, check=True
    ).stdout.splitlines()
    assert out == ["['run']", "['engine_factory.ops.run']"]


def test_refusals_carry_their_exit_status_through_the_one_handler(capsys):
    def raising(error):
        def command():
            raise error

        return command

    assert errors.guarded(raising(errors.FactoryError("bad key", key="models.m"))) == 1
    assert errors.guarded(raising(errors.Refused("would delete the only plans"))) == 2
    assert errors.guarded(raising(errors.RunInProgress("a run is in progress"))) == 2
    assert errors.guarded(raising(errors.SnakemakeFailed("snakemake --summary failed (1)"))) == 2
    assert errors.guarded(raising(errors.StageFailed("stage build exited", status=137))) == 137
    assert errors.guarded(raising(OSError(errno.ENOSPC, "No space left on device", "/x/out.json"))) == 1
    assert capsys.readouterr().err.splitlines() == [
        "error: config key 'models.m': bad key",
        "error: would delete the only plans",
        "error: a run is in progress",
        "error: snakemake --summary failed (1)",
        "error: stage build exited",
        "error: No space left on device, writing '/x/out.json'",
    ]
    with pytest.raises(ValueError):  # anything else is a bug: it keeps its traceback
        errors.guarded(raising(ValueError("a bug")))
    with pytest.raises(OSError):  # an OSError that is not a fact of the disk, too
        errors.guarded(raising(OSError(errno.EBADF, "Bad file descriptor")))


def test_an_unknown_stage_is_one_line_and_exit_status_1(capsys):
    assert main(["run", "nonesuch", '{"inputs": {}, "outputs": {}}', "{}"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("error: unknown stage 'nonesuch' (stages: ") and err.count("\n") == 1


def test_repair_during_a_run_is_refused_with_exit_status_2(tmp_path, monkeypatch, capsys):
    from engine_factory.ops import verify

    monkeypatch.setattr(
        verify,
        "state",
        lambda d: {"in_progress": True, "runs": [{"pid": 4242, "started": 0}], "locked": True, "stale_lock": False},
    )
    assert main(["verify", "-d", str(tmp_path), "--repair"]) == 2
    assert capsys.readouterr().err == ("error: a factory run is in progress here (pid 4242): repair after it ends\n")


def test_an_ops_command_without_configfile_in_another_zoos_folder_says_which_config_it_used(tmp_path):
    """Before: `status -d ~/zoo` silently checked the demo zoo against the user's folder ('72 missing')."""
    (tmp_path / "artifacts" / "resnet50" / "onnx").mkdir(parents=True)
    proc = cli("status", "-d", str(tmp_path))
    assert "no --configfile: using the demo zoo's" in proc.stderr and "(resnet50)" in proc.stderr, proc.stderr
    assert "--configfile YOUR-ZOO.yaml" in proc.stderr
    quiet = cli("status", "-d", str(tmp_path / "empty"))  # nothing built there: nothing to warn about
    assert "no --configfile" not in quiet.stderr
