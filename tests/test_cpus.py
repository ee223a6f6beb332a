"""``number_of_procs`` 0: one process per CPU this process may really use.

The affinity is tested for real, with ``taskset``; the cgroup quotas (v2
and v1) on files the test writes, since a test cannot change its own cgroup.
"""

from __future__ import annotations

import os
import shutil
import signal
from pathlib import Path

import pytest
from support import Service

from sprockets_http import _cpus


@pytest.mark.skipif(shutil.which("taskset") is None, reason="needs taskset")
def test_number_of_procs_0_counts_the_cpus_this_process_may_use(
    services: type[Service],
) -> None:
    service = services(
        ["-m", "sprockets_http", "--log-format", "text", "tests.apps.cli_app:make_app"],
        env={"NUMBER_OF_PROCS": "0"},
        wrapper=["taskset", "-c", "0"],
    )
    service.wait_serving()
    assert (
        service.count(r"1 worker: 1 CPU available \(affinity 1, cgroup quota [^)]+\)")
        == 1
    )
    # One process: no supervisor, the service itself serves.
    assert service.count(rf"serving on .*\(pid {service.pid}\)") == 1
    assert service.count("supervisor") == 0
    service.send(signal.SIGTERM)
    assert service.wait() == 0


def write_cgroup(root: Path, path: str, cpu_max: str) -> None:
    directory = root / path.lstrip("/")
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "cpu.max").write_text(cpu_max + "\n")


@pytest.mark.parametrize(
    ("files", "expected"),
    [
        ({"/a/b": "max 100000", "/a": "max 100000"}, None),
        ({"/a/b": "150000 100000"}, 1.5),
        ({"/a/b": "max 100000", "/a": "50000 100000"}, 0.5),  # a parent's quota
        ({"/a/b": "300000 100000", "/a": "200000 100000"}, 2.0),  # the smallest
        ({"/a/b": "nonsense"}, None),
        ({"/": "100000 100000"}, 1.0),  # no such directory: the root's
    ],
)
def test_the_cgroup_quota_is_read_from_cpu_max(
    tmp_path: Path, files: dict[str, str], expected: float | None
) -> None:
    root = tmp_path / "cgroup"
    for path, cpu_max in files.items():
        write_cgroup(root, path, cpu_max)
    proc_cgroup = tmp_path / "proc-self-cgroup"
    proc_cgroup.write_text("1:cpu:/elsewhere\n0::/a/b\n")

    assert _cpus.cgroup_quota(str(proc_cgroup), str(root)) == expected


def test_the_quota_is_rounded_up_and_never_above_the_affinity(tmp_path: Path) -> None:
    root = tmp_path / "cgroup"
    proc_cgroup = tmp_path / "proc-self-cgroup"
    proc_cgroup.write_text("0::/svc\n")
    affinity = len(os.sched_getaffinity(0))

    write_cgroup(root, "/svc", "1000 100000")  # 1% of a CPU
    assert _cpus.available(str(proc_cgroup), str(root)).count == 1
    write_cgroup(root, "/svc", f"{affinity * 100000 + 1} 100000")
    found = _cpus.available(str(proc_cgroup), str(root))
    assert found.count == affinity
    assert str(found).startswith(f"{affinity} CPU")


def write_cgroup_v1(root: Path, path: str, quota: str, period: str = "100000") -> None:
    directory = root / path.lstrip("/")
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "cpu.cfs_quota_us").write_text(quota + "\n")
    (directory / "cpu.cfs_period_us").write_text(period + "\n")


@pytest.mark.parametrize(
    ("files", "expected"),
    [
        ({"/a/b": "-1", "/a": "-1", "/": "-1"}, None),
        ({"/a/b": "250000"}, 2.5),
        ({"/a/b": "-1", "/a": "50000"}, 0.5),  # a parent's quota
        ({"/": "100000"}, 1.0),  # no such directory: the mount's own
        ({"/a/b": "nonsense"}, None),
    ],
)
def test_a_cgroup_v1_quota_is_read_from_the_cpu_controller(
    tmp_path: Path, files: dict[str, str], expected: float | None
) -> None:
    # The layout of Docker and Kubernetes on cgroup v1: the cpu controller
    # mounted with cpuacct, and a unified hierarchy with no quota of its own.
    root = tmp_path / "cgroup"
    mount = root / "cpu,cpuacct"
    for path, quota in files.items():
        write_cgroup_v1(mount, path, quota)
    (root / "unified").mkdir()
    proc_cgroup = tmp_path / "proc-self-cgroup"
    proc_cgroup.write_text("5:memory:/a/b\n4:cpu,cpuacct:/a/b\n0::/a/b\n")

    assert _cpus.cgroup_quota(str(proc_cgroup), str(root)) == expected


def test_the_cpu_controller_may_be_mounted_alone(tmp_path: Path) -> None:
    root = tmp_path / "cgroup"
    write_cgroup_v1(root / "cpu", "/svc", "150000")
    proc_cgroup = tmp_path / "proc-self-cgroup"
    proc_cgroup.write_text("3:cpu:/svc\n")
    assert _cpus.cgroup_quota(str(proc_cgroup), str(root)) == 1.5


def test_without_a_cgroup_file_system_there_is_no_quota(tmp_path: Path) -> None:
    proc_cgroup = tmp_path / "proc-self-cgroup"
    proc_cgroup.write_text("4:cpu,cpuacct:/svc\n0::/svc\n")
    assert _cpus.cgroup_quota(str(proc_cgroup), str(tmp_path)) is None
    assert _cpus.cgroup_quota(str(tmp_path / "missing"), str(tmp_path)) is None
