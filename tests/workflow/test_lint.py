"""`snakemake --lint` on the workflow with a test zoo (as Snakemake catalog workflows run it in CI): clean. (Rules
run their stage in `run:` blocks, which take no conda environment: the one pinned venv of requirements.txt, the
Snakefile says why; the conda lint no longer applies, and would be the only one allowed if it came back.)"""

import re
import subprocess
import sys

from helpers import REPO, TEST_CONFIGS

JUSTIFIED = {"Specify a conda environment or container for each rule."}


def test_lint_is_clean_but_for_the_justified_one():
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "snakemake",
            "-s",
            str(REPO / "Snakefile"),
            "--lint",
            "-d",
            str(REPO / ".test"),
            "--configfile",
            str(TEST_CONFIGS / "tiny.yaml"),
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    out = proc.stdout + proc.stderr
    titles = set(re.findall(r"^    \* (.+?):$", out, re.M))
    assert proc.returncode == 0 and titles <= JUSTIFIED, (sorted(titles - JUSTIFIED), out[-3000:])
    assert titles or "Congratulations, your workflow is in a good condition!" in out, out[-3000:]
