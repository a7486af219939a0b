"""`snakemake --lint` on the workflow with a test zoo (as Snakemake catalog workflows run it in CI): clean except for
the one lint the project answers on purpose (the Snakefile says why: one pinned environment for every stage)."""
import re
import subprocess
import sys

from helpers import REPO, TEST_CONFIGS

JUSTIFIED = {"Specify a conda environment or container for each rule."}


def test_lint_is_clean_but_for_the_justified_one():
    proc = subprocess.run([sys.executable, "-m", "snakemake", "-s", str(REPO / "Snakefile"), "--lint", "-d",
                           str(REPO / ".test"), "--configfile", str(TEST_CONFIGS / "tiny.yaml")],
                          capture_output=True, text=True, timeout=300)
    out = proc.stdout + proc.stderr
    titles = set(re.findall(r"^    \* (.+?):$", out, re.M))
    assert titles and titles <= JUSTIFIED, sorted(titles - JUSTIFIED)
