"""Power on a Dask cluster: a scheduler and two single-threaded workers started here on 127.0.0.1
(no dashboards), the same numbers as one process with the same seed, and plain refusals."""
from __future__ import annotations

import os
import socket
import subprocess
import sys
import time

import numpy as np
import pytest

from core.errors import InputError
from core.stats.power import power_analysis
from core.stats.power_run import DaskRunner, LocalRunner
from tests.power_cases import INTERACTION, ROOT, paperlike

pytest.importorskip("distributed")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Cluster:
    """``python -m dask scheduler`` and ``python -m dask worker`` in subprocesses on 127.0.0.1."""

    def __init__(self, cwd, with_project: bool, workers: int = 2):
        self.address = f"tcp://127.0.0.1:{free_port()}"
        env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
        python = [sys.executable]
        if not with_project:
            # The project is installed in this environment (pyproject.toml, editable), so a cluster
            # without its code is this Python without the site's .pth files (where that install
            # lives), its packages (dask) still on the path.
            import sysconfig

            python = [sys.executable, "-S"]
            env["PYTHONPATH"] = sysconfig.get_paths()["purelib"]
        self.procs = [subprocess.Popen(
            [*python, "-m", "dask", "scheduler", "--host", "127.0.0.1", "--port",
             self.address.rsplit(":", 1)[1], "--no-dashboard"],
            cwd=cwd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)]
        self.procs.append(subprocess.Popen(
            [*python, "-m", "dask", "worker", self.address, "--host", "127.0.0.1", "--nthreads", "1",
             "--nworkers", str(workers), "--no-dashboard"],
            cwd=cwd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
        self.wait(workers)

    def wait(self, workers: int, timeout: float = 120) -> None:
        from distributed import Client

        deadline = time.monotonic() + timeout
        while True:
            try:
                with Client(self.address, timeout=5, set_as_default=False) as client:
                    client.wait_for_workers(workers, timeout=max(1, deadline - time.monotonic()))
                    return
            except (OSError, TimeoutError):
                if time.monotonic() > deadline:
                    self.stop()
                    raise

    def stop(self) -> None:
        for proc in reversed(self.procs):
            proc.terminate()
        for proc in reversed(self.procs):
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()


@pytest.mark.slow
def test_same_result_on_a_local_dask_cluster_as_on_one_process():
    data = paperlike()
    kwargs = dict(patients=[40, 96, 150], nsim=12, seed=9)
    one = power_analysis(data, INTERACTION, "alliance_between:alliance_within", runner=LocalRunner(1), **kwargs)
    cluster = Cluster("/", with_project=True)  # any folder: the project is installed in the environment
    try:
        seen = []
        runner = DaskRunner(cluster.address)
        spread = power_analysis(data, INTERACTION, "alliance_between:alliance_within", runner=runner,
                                progress=lambda done, total, left: seen.append(done), **kwargs)
    finally:
        cluster.stop()
    assert spread.report()["power"] == one.report()["power"]
    for n in (40, 96, 150):
        assert np.array_equal(spread.p_values[n], one.p_values[n], equal_nan=True)
    assert seen[0] == 0 and seen[-1] == 36 and seen == sorted(seen)
    assert spread.engine == f"the Dask cluster at {cluster.address} (2 worker threads)"


@pytest.mark.slow
def test_a_cluster_without_the_project_code_is_refused_in_a_sentence(tmp_path):
    data = paperlike()
    cluster = Cluster(tmp_path, with_project=False, workers=1)
    try:
        with pytest.raises(InputError, match="cannot import this project's code"):
            power_analysis(data, INTERACTION, "alliance_within", patients=[40], nsim=2,
                           runner=DaskRunner(cluster.address))
    finally:
        cluster.stop()


def test_an_unreachable_scheduler_is_refused_in_a_sentence():
    data = paperlike()
    with pytest.raises(InputError, match="Cannot reach the Dask scheduler at tcp://127.0.0.1:"):
        power_analysis(data, INTERACTION, "alliance_within", patients=[40], nsim=2,
                       runner=DaskRunner(f"tcp://127.0.0.1:{free_port()}", timeout=2))
