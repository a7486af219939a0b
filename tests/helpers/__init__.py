"""What the tests share: the input specs of the demo models, a runner for the real workflow and the CLI, the test
zoos under .test/config/ (as Snakemake catalog workflows keep theirs), and small assertions."""

from __future__ import annotations

import copy
import os
import re
import subprocess
import sys
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[2]
TEST_CONFIGS = REPO / ".test" / "config"
PROFILE = REPO / "workflow" / "profiles" / "default"
SNAKEMAKE = [sys.executable, "-m", "snakemake", "-s", str(REPO / "Snakefile"), "--workflow-profile", str(PROFILE)]

CNN_INPUTS = {
    "x": {
        "dtype": "float32",
        "shape": ["batch", 3, 32, 32],
        "min": [1, 3, 32, 32],
        "opt": [4, 3, 32, 32],
        "max": [8, 3, 32, 32],
    }
}
TWO_TOWER_INPUTS = {
    "image": {
        "dtype": "float32",
        "shape": ["batch", 3, 16, 16],
        "min": [1, 3, 16, 16],
        "opt": [4, 3, 16, 16],
        "max": [16, 3, 16, 16],
    },
    "features": {"dtype": "float32", "shape": ["batch", 8], "min": [1, 8], "opt": [4, 8], "max": [16, 8]},
}
MLP_INPUTS = {"features": {"dtype": "float32", "shape": ["batch", 16], "min": [1, 16], "opt": [4, 16], "max": [64, 16]}}


def load_test_config(name: str) -> dict:
    """A test zoo from .test/config/<name>.yaml (paths relative to that folder, as a user's config file has them)."""
    return yaml.safe_load((TEST_CONFIGS / f"{name}.yaml").read_text())


def write_config(workdir: Path, cfg: dict, name: str = "zoo.yaml") -> Path:
    """`cfg` as workdir/config/<name>: the test zoos' relative paths (../artifacts/demo/...) then resolve into
    the working directory, as .test/config/ does for .test/."""
    path = Path(workdir) / "config" / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(copy.deepcopy(cfg), sort_keys=False))
    return path


def snakemake(
    workdir: Path,
    *args,
    configfile: Path | None = None,
    env: dict | None = None,
    check: bool = True,
    timeout: int = 1200,
    cores: str = "2",
    cwd=None,
) -> subprocess.CompletedProcess:
    """The real workflow on `workdir` (its config: `configfile`, default workdir/config/zoo.yaml)."""
    configfile = configfile or Path(workdir) / "config" / "zoo.yaml"
    proc = subprocess.run(
        [*SNAKEMAKE, "--directory", str(workdir), "--configfile", str(configfile), "--cores", cores, *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=env,
        cwd=cwd,
    )
    proc.out = proc.stdout + proc.stderr
    if check and proc.returncode != 0:
        raise AssertionError(f"snakemake failed ({proc.returncode}):\n{proc.stdout[-4000:]}\n{proc.stderr[-6000:]}")
    return proc


def build_once(base: Path, zoo, *, env: dict | None = None, check: bool = True) -> dict:
    """One real run that a test module shares (its `built` fixture): `zoo` is either a config dict, written to
    base/work/config/zoo.yaml (a test zoo's relative paths then resolve into the working directory), or a function
    that writes a user's zoo outside the working directory (into base/zoo) and returns its config file. Returns the
    working directory (`work`), `zoo`, `config`, `env` and the finished run (`proc`)."""
    base = Path(base)
    work = base / "work"
    work.mkdir(parents=True, exist_ok=True)
    config = zoo(base / "zoo") if callable(zoo) else write_config(work, zoo)
    proc = snakemake(work, configfile=config, env=env, check=check)
    return {"work": work, "zoo": base / "zoo", "config": config, "env": env, "proc": proc}


def planned_jobs(text: str) -> list[tuple[str, str | None]]:
    """(stage, model wildcard) of every job in a dry run's output (a test's reading of Snakemake's text); a target
    set's rule (build_sm86_89) counts as its stage (build); a checkpoint (deploy) as a rule."""
    from engine_factory.paths import stage_of

    jobs = []
    for block in re.split(r"\n(?=(?:local)?(?:rule|checkpoint) )", text):
        m = re.match(r"(?:local)?(?:rule|checkpoint) (\w+):", block)
        if m:
            w = re.search(r"wildcards: .*?model=([\w.-]+)", block)
            jobs.append((stage_of(m.group(1)), w.group(1) if w else None))
    return jobs


def dry_run(workdir: Path, *args, **kw) -> list[tuple[str, str | None]]:
    return planned_jobs(snakemake(workdir, "-n", *args, **kw).out)


def cli(*args, env: dict | None = None, cwd=None) -> subprocess.CompletedProcess:
    """`python -m engine_factory ...` as a user runs it (from any directory: the venv knows the checkout)."""
    return subprocess.run(
        [sys.executable, "-m", "engine_factory", *map(str, args)],
        capture_output=True,
        text=True,
        env=env,
        cwd=cwd or REPO,
        timeout=900,
    )


def env_without(*names: str, **extra) -> dict:
    return {**{k: v for k, v in os.environ.items() if k not in names}, **extra}


def leftovers(directory: Path) -> list[str]:
    """Files a failed stage may have left behind (temporary or partial)."""
    return sorted(p.name for p in Path(directory).rglob("*") if p.is_file())
