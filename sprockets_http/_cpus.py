"""How many CPUs this process may really use, for ``number_of_procs`` 0.

``os.cpu_count()`` counts the machine's CPUs.  A process pinned to some of
them (``taskset``, a container's ``cpuset``) or given a CPU quota (a
container's CPU limit, which cgroup v2 keeps in ``cpu.max``) gets less, and
one worker per machine CPU would only compete for it.
"""

from __future__ import annotations

import dataclasses
import math
import os

PROC_CGROUP = "/proc/self/cgroup"
CGROUP_ROOT = "/sys/fs/cgroup"


@dataclasses.dataclass(frozen=True)
class Available:
    """The CPUs found, and where the count came from.

    :param count: CPUs to use: the smaller of the two below, quota rounded
        up, at least 1
    :param affinity: CPUs this process may be scheduled on
    :param quota: CPUs' worth of time the cgroup quota allows; :data:`None`
        without a quota
    """

    count: int
    affinity: int
    quota: float | None

    def __str__(self) -> str:
        quota = "none" if self.quota is None else f"{self.quota:g} CPUs"
        plural = "" if self.count == 1 else "s"
        return (
            f"{self.count} CPU{plural} available "
            f"(affinity {self.affinity}, cgroup quota {quota})"
        )


def available(
    proc_cgroup: str = PROC_CGROUP, cgroup_root: str = CGROUP_ROOT
) -> Available:
    """The CPUs this process may use, from its affinity and cgroup quota.

    :param proc_cgroup: the file naming this process's cgroups
    :param cgroup_root: where the cgroup v2 hierarchy is mounted
    """
    affinity = _affinity()
    quota = cgroup_quota(proc_cgroup, cgroup_root)
    count = affinity if quota is None else min(affinity, math.ceil(quota))
    return Available(max(1, count), affinity, quota)


def cgroup_quota(proc_cgroup: str, cgroup_root: str) -> float | None:
    """The smallest cgroup v2 CPU quota over this process's cgroup and its
    parents, in CPUs (``cpu.max``'s quota divided by its period).

    :param proc_cgroup: the file naming this process's cgroups; its
        cgroup v2 line reads ``0::/PATH``
    :param cgroup_root: where the cgroup v2 hierarchy is mounted
    :returns: :data:`None` when no ``cpu.max`` sets a quota, or none can
        be read (cgroup v1, no cgroup file system)
    """
    try:
        with open(proc_cgroup, encoding="utf-8") as stream:
            lines = stream.read().splitlines()
    except OSError:
        return None
    relative = next(
        (line[len("0::") :] for line in lines if line.startswith("0::")), None
    )
    if relative is None:
        return None
    directory = os.path.join(cgroup_root, relative.strip().lstrip("/"))
    if not os.path.isdir(directory):
        # In a container without its own cgroup namespace the path names
        # the host's hierarchy; the container's cgroup is mounted at the root.
        directory = cgroup_root
    quotas = []
    while True:
        quota = _read_cpu_max(os.path.join(directory, "cpu.max"))
        if quota is not None:
            quotas.append(quota)
        if os.path.normpath(directory) == os.path.normpath(cgroup_root):
            break
        directory = os.path.dirname(directory)
    return min(quotas, default=None)


def _read_cpu_max(path: str) -> float | None:
    # "max 100000" (no quota) or "QUOTA PERIOD", in microseconds.
    try:
        with open(path, encoding="ascii") as stream:
            fields = stream.read().split()
    except (OSError, UnicodeDecodeError):
        return None
    if len(fields) != 2 or fields[0] == "max":
        return None
    try:
        quota, period = int(fields[0]), int(fields[1])
    except ValueError:
        return None
    if quota <= 0 or period <= 0:
        return None
    return quota / period


def _affinity() -> int:
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1
