"""How many CPUs this process may really use: affinity, then a cgroup CPU limit.

``os.cpu_count()`` is the machine's count. In a container it is the node's, not
the pod's CPU limit, so a pool sized by it on a 32-core node runs 32 argon2
hashes at 64 MiB each inside a pod limited to one CPU and a gigabyte (found by
the soak test). This reads what Go and the JVM read: the scheduler affinity
mask, then the cgroup v2 ``cpu.max`` (or v1 ``cpu.cfs_quota_us``) quota.
"""

from __future__ import annotations

import math
import os
from pathlib import Path

CGROUP = Path("/sys/fs/cgroup")


def _quota(root: Path) -> float | None:
    try:
        quota, period = (root / "cpu.max").read_text().split()[:2]
        if quota != "max":
            return int(quota) / int(period)
    except (OSError, ValueError):
        pass
    try:
        quota_us = int((root / "cpu" / "cpu.cfs_quota_us").read_text())
        period_us = int((root / "cpu" / "cpu.cfs_period_us").read_text())
        if quota_us > 0 and period_us > 0:
            return quota_us / period_us
    except (OSError, ValueError):
        pass
    return None


def available_cpus(cgroup: Path | None = None) -> int:
    """At least 1: the CPUs in this process's affinity mask, capped by a cgroup quota."""
    try:
        count = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        count = os.cpu_count() or 1
    quota = _quota(CGROUP if cgroup is None else cgroup)
    if quota is not None:
        count = min(count, math.ceil(quota))
    return max(1, count)
