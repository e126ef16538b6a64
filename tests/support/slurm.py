"""A real one-node SLURM cluster on this machine, for the tests that submit the workflow to SLURM.

``LocalCluster`` starts Debian's munged, slurmctld and slurmd in the
foreground, as children of the test process, with every file they write in
one folder, and stops exactly those processes again. The node is this machine
as ``slurmd -C`` reads it (cores, memory), with ``DefMemPerCPU`` so that a job
without a memory request does not take the whole node, and one GPU declared
on a placeholder device file, so that GPU requests are scheduled on a machine
without a GPU. There is no slurmdbd: ``sacct`` does not work, and every
finished job is recorded by ``jobcomp/filetxt`` instead; slurmctld also keeps
finished jobs for ``scontrol show job`` until the cluster stops.

The configuration must be ``/etc/slurm/slurm.conf``: the SLURM executor
plugin's job step drops ``SLURM_CONF`` from the environment of the ``srun``
it starts. A file already there is put back at teardown; a cluster that
answers with it is never taken over.
"""

from __future__ import annotations

import os
import shlex
import shutil
import socket
import subprocess
import time
from pathlib import Path
from typing import Self

SLURM_CONF = Path("/etc/slurm/slurm.conf")
PARTITION = "test"
COMMANDS = ("munged", "slurmctld", "slurmd", "sbatch", "squeue", "scontrol", "sinfo", "srun")
START_SECONDS = 60.0
STOP_SECONDS = 30.0


class ClusterUnavailable(RuntimeError):
    """The cluster cannot run here; the message says why (a reason to skip)."""


def unavailable_reason() -> str | None:
    """Why no test cluster can start on this machine, or None when it can."""
    missing = [name for name in COMMANDS if shutil.which(name) is None]
    if missing:
        return f"SLURM/munge not installed ({', '.join(missing)} missing; `make slurm` installs them as root)"
    if os.geteuid() != 0:
        return "the test cluster runs its daemons as root and writes /etc/slurm/slurm.conf: run the tests as root"
    if SLURM_CONF.exists() and _answers(SLURM_CONF):
        return f"a SLURM cluster already answers with {SLURM_CONF}; the test does not take over a live cluster"
    return None


def _answers(conf: Path) -> bool:
    """Whether a slurmctld configured by ``conf`` responds."""
    ping = subprocess.run(
        ["scontrol", "ping"], check=False, capture_output=True, text=True, env={**os.environ, "SLURM_CONF": str(conf)}
    )
    return ping.returncode == 0 and "UP" in ping.stdout


def node_hardware() -> dict[str, str]:
    """This machine as slurmd sees it (``slurmd -C``): CPUs, sockets, cores, threads, RealMemory."""
    probe = subprocess.run(["slurmd", "-C"], capture_output=True, text=True, check=True)
    fields = dict(item.split("=", 1) for item in probe.stdout.splitlines()[0].split())
    fields.pop("NodeName")
    return fields


def _free_port() -> int:
    """A TCP port nothing listens on now."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def slurm_conf(root: Path, node: str, hardware: dict[str, str]) -> str:
    """The cluster's slurm.conf: one node (this machine), one default partition, no accounting database."""
    cpus, memory = int(hardware["CPUs"]), int(hardware["RealMemory"])
    node_line = " ".join(f"{key}={value}" for key, value in hardware.items())
    lines = {
        "ClusterName": "workflowtest",
        "SlurmctldHost": f"{node}(127.0.0.1)",
        "SlurmctldPort": _free_port(),
        "SlurmdPort": _free_port(),
        "AuthType": "auth/munge",
        "CredType": "cred/munge",
        "AuthInfo": f"socket={root / 'munge.socket'}",
        "SlurmUser": "root",
        "SlurmdUser": "root",
        "StateSaveLocation": root / "state",
        "SlurmdSpoolDir": root / "spool",
        "SlurmctldPidFile": root / "slurmctld.pid",
        "SlurmdPidFile": root / "slurmd.pid",
        "SlurmctldLogFile": root / "slurmctld.log",
        "SlurmdLogFile": root / "slurmd.log",
        "ProctrackType": "proctrack/pgid",
        "TaskPlugin": "task/none",
        "JobAcctGatherType": "jobacct_gather/none",
        "AccountingStorageType": "accounting_storage/none",
        "JobCompType": "jobcomp/filetxt",
        "JobCompLoc": root / "jobcomp.txt",
        "MinJobAge": 86400,  # finished jobs stay visible to squeue and scontrol while the cluster runs
        "SelectType": "select/cons_tres",
        "SelectTypeParameters": "CR_Core_Memory",
        "GresTypes": "gpu",
        "ReturnToService": 2,
        "MpiDefault": "none",
        "MailProg": "/bin/true",
    }
    text = "".join(f"{key}={value}\n" for key, value in lines.items())
    text += f"NodeName={node} NodeAddr=127.0.0.1 {node_line} Gres=gpu:1 State=UNKNOWN\n"
    partition = f"PartitionName={PARTITION} Nodes={node} Default=YES MaxTime=INFINITE State=UP"
    return text + f"{partition} DefMemPerCPU={memory // cpus}\n"


def gres_conf(node: str, gpu_file: Path) -> str:
    """One GPU on the node, on a placeholder device file: schedulable, never opened."""
    return f"AutoDetect=off\nNodeName={node} Name=gpu File={gpu_file}\n"


class LocalCluster:
    """munged, slurmctld and slurmd of a one-node cluster on this machine, their files under ``root``.

    Raises ``ClusterUnavailable`` (from the constructor or on entry) where the
    cluster cannot run here.
    """

    def __init__(self, root: Path):
        reason = unavailable_reason()
        if reason:
            raise ClusterUnavailable(reason)
        self.root = root
        self.node = socket.gethostname().split(".")[0]
        self.hardware = node_hardware()
        self.daemons: dict[str, subprocess.Popen] = {}
        self._saved: dict[Path, bytes | None] = {}

    @property
    def cpus(self) -> int:
        return int(self.hardware["CPUs"])

    @property
    def memory_mb(self) -> int:
        return int(self.hardware["RealMemory"])

    @property
    def completions(self) -> Path:
        """The jobcomp/filetxt record: one line per finished job."""
        return self.root / "jobcomp.txt"

    def __enter__(self) -> Self:
        try:
            self._configure()
            self._start("munged", self._munged_command(), ready=self.root / "munge.socket")
            self._start("slurmctld", ["slurmctld", "-D", "-i"])
            self._start("slurmd", ["slurmd", "-D", "-N", self.node])
            self._wait_for_idle_node()
        except BaseException:
            self.__exit__(None, None, None)
            raise
        return self

    def __exit__(self, *exc) -> None:
        """Cancel any job still there, stop the daemons (newest first), put the machine's files back."""
        controller = self.daemons.get("slurmctld")
        if controller is not None and controller.poll() is None:
            self.command("scancel", f"--partition={PARTITION}", check=False)
            self._wait_until_no_job_is_active()
        for name in reversed(list(self.daemons)):
            _stop(self.daemons.pop(name))
        for path, content in self._saved.items():
            if content is None:
                path.unlink(missing_ok=True)
            else:
                path.write_bytes(content)
        self._saved.clear()

    def _configure(self) -> None:
        """Key, folders and the two SLURM configuration files (the machine's own ones kept aside)."""
        for folder in ("state", "spool", "munge"):
            (self.root / folder).mkdir(parents=True, exist_ok=True)
        key = self.root / "munge" / "munge.key"
        key.write_bytes(os.urandom(1024))
        key.chmod(0o400)
        gpu_file = self.root / "gpu0"
        gpu_file.touch()
        self._install(SLURM_CONF, slurm_conf(self.root, self.node, self.hardware))
        self._install(SLURM_CONF.with_name("gres.conf"), gres_conf(self.node, gpu_file))

    def _install(self, path: Path, text: str) -> None:
        """Write ``path``, remembering what was there to put it back."""
        self._saved.setdefault(path, path.read_bytes() if path.exists() else None)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)

    def _munged_command(self) -> list[str]:
        """munged on its own key and socket: the machine's munge, if any, is left alone."""
        munge = self.root / "munge"
        return [
            "munged",
            "--foreground",
            "--force",
            f"--socket={self.root / 'munge.socket'}",
            f"--key-file={munge / 'munge.key'}",
            f"--pid-file={munge / 'munged.pid'}",
            f"--log-file={munge / 'munged.log'}",
            f"--seed-file={munge / 'munged.seed'}",
        ]

    def _start(self, name: str, command: list[str], ready: Path | None = None) -> None:
        """Start one daemon in the foreground (output in ``<name>.out``), and wait for ``ready`` to exist."""
        with open(self.root / f"{name}.out", "wb") as output:
            self.daemons[name] = subprocess.Popen(
                command, stdout=output, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL
            )
        deadline = time.monotonic() + START_SECONDS
        while ready is not None and not ready.exists():
            self._check_alive()
            if time.monotonic() > deadline:
                raise ClusterUnavailable(f"{name} did not create {ready} in {START_SECONDS:.0f} s")
            time.sleep(0.1)

    def _check_alive(self) -> None:
        """A daemon that exited makes the cluster unavailable; its log says why."""
        for name, process in self.daemons.items():
            if process.poll() is not None:
                raise ClusterUnavailable(f"{name} exited with {process.returncode}: {self._tail(name)}")

    def _tail(self, name: str) -> str:
        logs = [self.root / f"{name}.out", self.root / f"{name}.log", self.root / "munge" / f"{name}.log"]
        text = "".join(path.read_text(errors="replace") for path in logs if path.exists())
        return text[-2000:]

    def _wait_for_idle_node(self) -> None:
        """Until the node is registered and idle (slurmd up, its CPUs, memory and GPU accepted)."""
        deadline = time.monotonic() + START_SECONDS
        state = ""
        while time.monotonic() < deadline:
            self._check_alive()
            state = self.command("sinfo", "--noheader", f"--nodes={self.node}", "--format=%T", check=False).stdout
            if state.strip() == "idle":
                return
            time.sleep(0.5)
        node = self.command("scontrol", "show", "node", self.node, check=False).stdout
        raise ClusterUnavailable(
            f"node {self.node} is {state.strip() or 'unknown'} after {START_SECONDS:.0f} s:\n{node}"
        )

    def _wait_until_no_job_is_active(self) -> None:
        """Until cancelled jobs have ended, so that no job step outlives slurmd."""
        deadline = time.monotonic() + STOP_SECONDS
        while time.monotonic() < deadline:
            active = self.command("squeue", "--noheader", "--states=PENDING,RUNNING,COMPLETING", check=False)
            if active.returncode != 0 or not active.stdout.strip():
                return
            time.sleep(0.5)

    def command(self, *args: str, check: bool = True) -> subprocess.CompletedProcess:
        """A SLURM client command against this cluster."""
        environment = {**os.environ, "SLURM_CONF": str(SLURM_CONF)}
        result = subprocess.run(args, check=False, capture_output=True, text=True, env=environment)
        if check and result.returncode != 0:
            raise RuntimeError(f"{shlex.join(args)} failed ({result.returncode}): {result.stderr}")
        return result

    def jobs(self) -> list[dict[str, str]]:
        """Every job slurmctld knows of (all of them: ``MinJobAge`` keeps finished ones), as key=value fields."""
        text = self.command("scontrol", "show", "job", "--oneliner").stdout
        return [_fields(line) for line in text.splitlines() if line.startswith("JobId=")]

    def completed(self) -> list[dict[str, str]]:
        """The jobcomp/filetxt record of every finished job, as key=value fields."""
        if not self.completions.exists():
            return []
        return [_fields(line) for line in self.completions.read_text().splitlines() if line.strip()]


def _fields(line: str) -> dict[str, str]:
    """``Key=value Key=value`` (values without spaces, as SLURM writes them) as a dict."""
    return dict(item.split("=", 1) for item in line.split() if "=" in item)


def _stop(process: subprocess.Popen) -> None:
    """Stop one daemon this module started, killing it if it does not exit."""
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout=STOP_SECONDS)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
