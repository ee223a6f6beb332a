"""How many CPUs this process may really use, for ``number_of_procs`` 0.

``os.cpu_count()`` counts the machine's CPUs.  A process pinned to some of
them (``taskset``, a container's ``cpuset``) or given a CPU quota (a
container's CPU limit, which cgroup v2 keeps in ``cpu.max`` and cgroup v1 in
``cpu.cfs_quota_us``) gets less, and one worker per machine CPU would only
compete for it.
"""

from __future__ import annotations

import dataclasses
import math
import os
from collections.abc import Callable

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
    :param cgroup_root: where the cgroup file systems are mounted
    """
    affinity = _affinity()
    quota = cgroup_quota(proc_cgroup, cgroup_root)
    count = affinity if quota is None else min(affinity, math.ceil(quota))
    return Available(max(1, count), affinity, quota)


def cgroup_quota(proc_cgroup: str, cgroup_root: str) -> float | None:
    """The smallest cgroup CPU quota over this process's cgroup and its
    parents, in CPUs: the quota divided by its period.

    :param proc_cgroup: the file naming this process's cgroups: the cgroup
        v2 line reads ``0::/PATH``, the cgroup v1 line of the ``cpu``
        controller ``N:cpu,cpuacct:/PATH``
    :param cgroup_root: where the cgroup file systems are mounted; cgroup
        v2 keeps the quota in ``cpu.max``, v1 in ``cpu.cfs_quota_us`` and
        ``cpu.cfs_period_us`` under ``CONTROLLERS/`` (``cpu,cpuacct/``, or
        ``cpu/``)
    :returns: :data:`None` when no cgroup sets a quota, or none can be read
        (no cgroup file system)

    .. versionchanged:: 3.0.0
       cgroup v1 is read too.
    """
    try:
        with open(proc_cgroup, encoding="utf-8") as stream:
            lines = stream.read().splitlines()
    except OSError:
        return None
    quotas = []
    for line in lines:
        fields = line.split(":", 2)
        if len(fields) != 3:
            continue
        hierarchy, controllers, relative = fields
        if hierarchy == "0" and not controllers:
            quotas.append(_smallest(cgroup_root, relative, _read_cpu_max))
        elif "cpu" in controllers.split(","):
            # The v1 controller's own hierarchy: a mount that joins several
            # controllers is named after them all, with a link for each.
            for name in (controllers, "cpu"):
                mount = os.path.join(cgroup_root, name)
                if os.path.isdir(mount):
                    quotas.append(_smallest(mount, relative, _read_cfs))
                    break
    return min((quota for quota in quotas if quota is not None), default=None)


def _smallest(
    mount: str, relative: str, read: Callable[[str], float | None]
) -> float | None:
    """The smallest quota ``read`` finds in ``relative``'s directory under
    ``mount`` and its parents up to ``mount``."""
    directory = os.path.join(mount, relative.strip().lstrip("/"))
    if not os.path.isdir(directory):
        # In a container without its own cgroup namespace the path names
        # the host's hierarchy; the container's cgroup is mounted at the root.
        directory = mount
    quotas = []
    while True:
        quota = read(directory)
        if quota is not None:
            quotas.append(quota)
        if os.path.normpath(directory) == os.path.normpath(mount):
            break
        directory = os.path.dirname(directory)
    return min(quotas, default=None)


def _read_cpu_max(directory: str) -> float | None:
    # cgroup v2: "max 100000" (no quota) or "QUOTA PERIOD", in microseconds.
    fields = _read_fields(os.path.join(directory, "cpu.max"))
    if len(fields) != 2 or fields[0] == "max":
        return None
    return _ratio(fields[0], fields[1])


def _read_cfs(directory: str) -> float | None:
    # cgroup v1: the quota is -1 when there is none.
    quota = _read_fields(os.path.join(directory, "cpu.cfs_quota_us"))
    period = _read_fields(os.path.join(directory, "cpu.cfs_period_us"))
    if len(quota) != 1 or len(period) != 1:
        return None
    return _ratio(quota[0], period[0])


def _read_fields(path: str) -> list[str]:
    try:
        with open(path, encoding="ascii") as stream:
            return stream.read().split()
    except (OSError, UnicodeDecodeError):
        return []


def _ratio(quota_text: str, period_text: str) -> float | None:
    try:
        quota, period = int(quota_text), int(period_text)
    except ValueError:
        return None
    if quota <= 0 or period <= 0:
        return None
    return quota / period


def _affinity() -> int:
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1
