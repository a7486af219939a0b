"""A real single-node Slurm on loopback for tests: Debian's slurm-wlm (22.05) and munge, daemons started as root.

Two partitions on the one node: `cpu` (the default) and `gpu`, whose GRES is declared with fake device files (this
machine has no GPU; Slurm needs a character device per typed GPU: /dev/null). A TaskProlog makes jobs in a
partition see that partition's simulated hardware: it exports FACTORY_HOST_FACTS (scripts/engine_factory/host.py), as
a real GPU node's own probe would report its GPU. Every daemon is started here and stopped here by its PID, also on
failure.

    python tests/helpers/slurm_cluster.py install      # apt-get install slurm-wlm munge (what `make test-slurm` runs)

Facts this relies on (measured on Debian 12, design.md section 9): the config must be /etc/slurm/slurm.conf
(jobs lose SLURM_CONF on the way through the jobstep), completed jobs stay visible to squeue/scontrol for
MinJobAge seconds (no slurmdbd here, so sacct never reports them), typed GPU GRES needs character devices.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path

PACKAGES = ["slurm-wlm", "munge"]
BINARIES = ["munged", "slurmctld", "slurmd", "sbatch", "squeue", "scontrol", "sinfo", "scancel"]
CONF_DIR = Path("/etc/slurm")
MARK = "# engine-factory test cluster"
LOCK = Path(tempfile.gettempdir()) / "engine-factory-slurm-test.lock"
NODE = "factory-node"


def missing_binaries() -> list[str]:
    return [b for b in BINARIES if not shutil.which(b)]


def install(timeout_s: float = 600) -> None:
    """Install slurm-wlm and munge from Debian packages (root; daemons are not started by the packages here)."""
    if not missing_binaries():
        return
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    subprocess.run(["apt-get", "update", "-q"], check=True, env=env, timeout=timeout_s, stdout=subprocess.DEVNULL)
    subprocess.run(
        ["apt-get", "install", "-y", "-q", "--no-install-recommends", *PACKAGES],
        check=True,
        env=env,
        timeout=timeout_s,
        stdout=subprocess.DEVNULL,
    )
    still = missing_binaries()
    if still:
        raise RuntimeError(f"installed {PACKAGES} but {still} are still missing")


def require() -> None:
    """Skip the calling test where this machine cannot run the cluster; fail instead under FACTORY_SLURM_REQUIRED
    (`make test-slurm`, CI), where a skip would hide a broken set-up."""
    import pytest

    reason = unavailable()
    if reason:
        if os.environ.get("FACTORY_SLURM_REQUIRED"):
            pytest.fail(f"Slurm test cluster unavailable: {reason}")
        pytest.skip(reason)


def unavailable() -> str | None:
    """Why this machine cannot run the test cluster, or None."""
    if os.geteuid() != 0:
        return "needs root (slurmd and munged run as root)"
    if missing_binaries() and not shutil.which("apt-get"):
        return f"{missing_binaries()} missing and no apt-get to install {PACKAGES}"
    conf = CONF_DIR / "slurm.conf"
    if conf.exists() and MARK not in conf.read_text(errors="replace"):
        return f"{conf} exists and is not this test's: not touching a real Slurm installation"
    return None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _mem_mb() -> int:
    with open("/proc/meminfo") as f:
        total_kb = int(re.search(r"MemTotal:\s+(\d+)", f.read()).group(1))
    return int(total_kb / 1024 * 0.8)


class Cluster:
    """`with Cluster(root, partition_facts={"gpu": {...}}) as c:` -- daemons up; stopped (by PID) on exit."""

    def __init__(
        self,
        root: Path,
        *,
        gpu_type: str = "sm89",
        gpu_feature: str = "sm89",
        partition_facts: dict[str, dict] | None = None,
        ready_timeout_s: float = 60,
    ):
        self.root = Path(root)
        self.gpu_type, self.gpu_feature = gpu_type, gpu_feature
        self.partition_facts = partition_facts or {}
        self.ready_timeout_s = ready_timeout_s
        self.procs: dict[str, subprocess.Popen] = {}
        self.started_s: float | None = None
        self._lock = None
        self._written: list[Path] = []

    # ------------------------------------------------------------------ lifecycle
    def __enter__(self) -> Cluster:
        try:
            self.start()
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(self, *exc) -> None:
        self.stop()

    def start(self) -> None:
        t0 = time.monotonic()
        self._lock = open(LOCK, "w")
        try:
            fcntl.flock(self._lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise RuntimeError(f"another test cluster holds {LOCK}")
        reason = unavailable()
        if reason:
            raise RuntimeError(reason)
        for d in ("state", "spool", "log", "run", "facts"):
            (self.root / d).mkdir(parents=True, exist_ok=True)
        self._write_munge_key()
        self._write_task_prolog()
        self._write_conf()
        self._spawn(
            "munged",
            [
                "munged",
                "-F",
                "--force",
                f"--socket={self.munge_socket}",
                f"--key-file={self.root / 'munge.key'}",
                f"--pid-file={self.root / 'run/munged.pid'}",
                f"--log-file={self.root / 'log/munged.log'}",
                f"--seed-file={self.root / 'munge.seed'}",
            ],
        )
        self._wait(lambda: self.munge_socket.exists(), "munged's socket")
        self._spawn("slurmctld", ["slurmctld", "-D", "-i"])
        self._wait(lambda: self._run(["scontrol", "ping"]).returncode == 0, "slurmctld (scontrol ping)")
        self._spawn("slurmd", ["slurmd", "-D", "-N", NODE])
        self._wait(
            lambda: self._run(["sinfo", "-h", "-N", "-o", "%t"]).stdout.split() == ["idle", "idle"],
            "the node to be idle in both partitions (sinfo)",
        )
        self.started_s = time.monotonic() - t0

    def stop(self) -> None:
        """Cancel this cluster's jobs, then stop the daemons started here, by PID; remove the config written here."""
        if self.procs.get("slurmctld") and self.procs["slurmctld"].poll() is None:
            ids = self._run(["squeue", "-h", "-o", "%i", "-t", "PENDING,RUNNING,CONFIGURING,COMPLETING"]).stdout.split()
            if ids:
                self._run(["scancel", *ids])
                deadline = time.monotonic() + 20
                while (
                    time.monotonic() < deadline
                    and self._run(
                        ["squeue", "-h", "-o", "%i", "-t", "PENDING,RUNNING,CONFIGURING,COMPLETING"]
                    ).stdout.split()
                ):
                    time.sleep(0.5)
        for name in ("slurmd", "slurmctld", "munged"):
            proc = self.procs.get(name)
            if proc is None or proc.poll() is not None:
                continue
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=10)
        for path in reversed(self._written):
            with contextlib.suppress(FileNotFoundError):
                if MARK in path.read_text(errors="replace"):
                    path.unlink()
        self._written.clear()
        if self._lock:
            self._lock.close()
            self._lock = None

    def pids(self) -> dict[str, int]:
        return {name: p.pid for name, p in self.procs.items()}

    def alive(self) -> dict[str, int]:
        """The daemons started here that are still running."""
        return {name: p.pid for name, p in self.procs.items() if p.poll() is None}

    # ------------------------------------------------------------------ Slurm's own records
    def jobs(self, name: str | None = None) -> list[dict]:
        """`scontrol show job -o`, parsed: one dict per job Slurm still holds (MinJobAge keeps finished ones)."""
        out = self._run(["scontrol", "show", "job", "-o"]).stdout
        jobs = []
        for line in out.splitlines():
            if not line.startswith("JobId="):
                continue
            fields = dict(m.groups() for m in re.finditer(r"(\S+?)=(\S*)", line))
            if name is None or fields.get("JobName") == name:
                jobs.append(fields)
        return jobs

    def controller_log(self) -> str:
        path = self.root / "log" / "slurmctld.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def logs_tail(self, n: int = 40) -> str:
        parts = []
        for path in sorted((self.root / "log").glob("*")):
            lines = path.read_text(errors="replace").splitlines()[-n:]
            parts.append(f"--- {path.name}\n" + "\n".join(lines))
        return "\n".join(parts)

    # ------------------------------------------------------------------ internals
    @property
    def munge_socket(self) -> Path:
        return self.root / "run" / "munge.socket"

    def _spawn(self, name: str, cmd: list[str]) -> None:
        out = open(self.root / "log" / f"{name}.out", "w")
        self.procs[name] = subprocess.Popen(
            cmd, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True
        )

    def _wait(self, ready, what: str) -> None:
        deadline = time.monotonic() + self.ready_timeout_s
        while time.monotonic() < deadline:
            dead = {n: p.returncode for n, p in self.procs.items() if p.poll() is not None}
            if dead:
                raise RuntimeError(f"daemon(s) exited while waiting for {what}: {dead}\n{self.logs_tail()}")
            if ready():
                return
            time.sleep(0.1)
        raise RuntimeError(f"timed out after {self.ready_timeout_s:.0f} s waiting for {what}\n{self.logs_tail()}")

    def _run(self, cmd: list[str]) -> subprocess.CompletedProcess:
        return subprocess.run(cmd, capture_output=True, text=True, timeout=30)

    def _write_munge_key(self) -> None:
        key = self.root / "munge.key"
        key.write_bytes(os.urandom(1024))
        key.chmod(0o600)

    def _write_task_prolog(self) -> None:
        lines = [
            "#!/bin/sh",
            "# Simulated node hardware: a job sees the facts of its partition's node type.",
            'case "$SLURM_JOB_PARTITION" in',
        ]
        for partition, facts in self.partition_facts.items():
            path = self.root / "facts" / f"{partition}.json"
            path.write_text(json.dumps(facts))
            lines.append(f'  {partition}) echo "export FACTORY_HOST_FACTS={path}" ;;')
        lines += ["esac", ""]
        prolog = self.root / "task_prolog.sh"
        prolog.write_text("\n".join(lines))
        prolog.chmod(0o755)

    def _write(self, path: Path, text: str) -> None:
        if path.exists() and MARK not in path.read_text(errors="replace"):
            raise RuntimeError(f"{path} exists and is not this test's")
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(f"{MARK} ({self.root})\n{text}")
        self._written.append(path)

    def _write_conf(self) -> None:
        host, r = socket.gethostname().split(".")[0], self.root
        self._write(
            CONF_DIR / "slurm.conf",
            f"""\
ClusterName=factorytest
SlurmctldHost={host}(127.0.0.1)
SlurmctldPort={_free_port()}
SlurmdPort={_free_port()}
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
AuthInfo=socket={self.munge_socket}
StateSaveLocation={r}/state
SlurmdSpoolDir={r}/spool
SlurmctldPidFile={r}/run/slurmctld.pid
SlurmdPidFile={r}/run/slurmd.pid
SlurmctldLogFile={r}/log/slurmctld.log
SlurmdLogFile={r}/log/slurmd.log
SlurmctldDebug=info
SlurmdDebug=info
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SwitchType=switch/none
MpiDefault=none
ReturnToService=2
SchedulerType=sched/backfill
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU
MinJobAge=3600
KillWait=5
InactiveLimit=0
SlurmdParameters=config_overrides
GresTypes=gpu
AccountingStorageType=accounting_storage/none
JobAcctGatherType=jobacct_gather/none
JobCompType=jobcomp/none
TaskProlog={r}/task_prolog.sh
NodeName={NODE} NodeHostname={host} NodeAddr=127.0.0.1 CPUs={len(os.sched_getaffinity(0))} RealMemory={_mem_mb()} \
Gres=gpu:{self.gpu_type}:1 Features={self.gpu_feature} State=UNKNOWN
PartitionName=cpu Nodes={NODE} Default=YES MaxTime=INFINITE State=UP
PartitionName=gpu Nodes={NODE} MaxTime=INFINITE State=UP
""",
        )
        self._write(CONF_DIR / "gres.conf", f"NodeName={NODE} Name=gpu Type={self.gpu_type} File=/dev/null\n")


if __name__ == "__main__":
    import sys

    if sys.argv[1:] == ["install"]:
        install()
    else:
        sys.exit("usage: python tests/helpers/slurm_cluster.py install")
