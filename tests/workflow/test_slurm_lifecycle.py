"""The test cluster's daemons are gone after a test, also when the test fails (marker `slurm`)."""

from pathlib import Path

import pytest

from helpers import slurm_cluster

pytestmark = pytest.mark.slurm


def running(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().split(")")[-1].split()[0]
    except FileNotFoundError:
        return False
    return state != "Z"


def test_daemons_are_stopped_by_pid_even_when_the_test_fails(tmp_path):
    slurm_cluster.require()
    slurm_cluster.install()
    cluster = slurm_cluster.Cluster(tmp_path)
    with pytest.raises(RuntimeError, match="a failing test"):
        with cluster:
            pids = cluster.pids()
            assert set(pids) == {"munged", "slurmctld", "slurmd"} and all(map(running, pids.values()))
            job = cluster._run(["sbatch", "--parsable", "-p", "gpu", "--wrap", "sleep 300"])  # still running at stop
            assert job.returncode == 0, job.stderr
            raise RuntimeError("a failing test")
    assert not [name for name, pid in pids.items() if running(pid)]
    assert not (slurm_cluster.CONF_DIR / "slurm.conf").exists()
