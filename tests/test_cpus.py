"""The CPU count that sizes the workers and the argon2 pool follows a container's limit."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from issuer.config import Settings
from issuer.cpus import available_cpus
from issuer.services import passwords

AFFINITY = len(os.sched_getaffinity(0))


def test_without_a_cgroup_limit_it_is_the_affinity_mask(tmp_path: Path) -> None:
    assert available_cpus(tmp_path) == AFFINITY
    (tmp_path / "cpu.max").write_text("max 100000\n")
    assert available_cpus(tmp_path) == AFFINITY


@pytest.mark.parametrize(("quota", "expected"), [("50000 100000", 1), ("100000 100000", 1)])
def test_a_cgroup_v2_quota_caps_it(tmp_path: Path, quota: str, expected: int) -> None:
    (tmp_path / "cpu.max").write_text(quota + "\n")
    assert available_cpus(tmp_path) == expected


def test_a_cgroup_v1_quota_caps_it(tmp_path: Path) -> None:
    (tmp_path / "cpu").mkdir()
    (tmp_path / "cpu" / "cpu.cfs_quota_us").write_text("150000\n")
    (tmp_path / "cpu" / "cpu.cfs_period_us").write_text("100000\n")
    assert available_cpus(tmp_path) == min(AFFINITY, 2)
    (tmp_path / "cpu" / "cpu.cfs_quota_us").write_text("-1\n")
    assert available_cpus(tmp_path) == AFFINITY


def test_unreadable_cgroup_files_are_no_limit(tmp_path: Path) -> None:
    (tmp_path / "cpu.max").write_text("garbage\n")
    assert available_cpus(tmp_path) == AFFINITY


def test_the_workers_and_the_argon2_pool_follow_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0, 1, 2, 3})
    (tmp_path / "cpu.max").write_text("100000 100000\n")  # a pod limited to one CPU
    monkeypatch.setattr("issuer.cpus.CGROUP", tmp_path)
    assert Settings().workers == 1
    passwords._pool.cache_clear()
    try:
        assert passwords._pool()._max_workers == 1
    finally:
        passwords._pool.cache_clear()
