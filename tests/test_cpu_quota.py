"""Threads come from the container's CPU quota, not the host's cores.

Each case runs a child Python in its own mount namespace (`unshare -m`, root only) with a
tmpfs laid over /sys/fs/cgroup holding a fake `cpu.max` (cgroup v2) or `cpu.cfs_*` files
(cgroup v1), so the real files are read by the real code path.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

pytestmark = pytest.mark.skipif(os.geteuid() != 0 or not shutil.which("unshare"),
                                reason="needs root and unshare(1) to lay fake cgroup files")

CHILD = textwrap.dedent("""
    import os, sys
    sys.path.insert(0, {root!r})
    from config import Settings
    from models.hardware import intra_op_threads, usable_cores
    print(usable_cores(), intra_op_threads(Settings(model_concurrency=2)))
""")


def _cores_under(files: dict[str, str], affinity: int | None = None) -> tuple[int, int]:
    setup = ["mount -t tmpfs none /sys/fs/cgroup"]
    for name, content in files.items():
        setup += [f"mkdir -p /sys/fs/cgroup/{Path(name).parent}", f"printf '%s' '{content}' > /sys/fs/cgroup/{name}"]
    run = f"{sys.executable} -c \"$CHILD\""
    if affinity is not None:
        run = f"taskset -c 0-{affinity - 1} {run}"
    script = " && ".join(setup + [run])
    out = subprocess.run(["unshare", "-m", "--propagation", "private", "sh", "-c", script],
                         env={**os.environ, "CHILD": CHILD.format(root=str(ROOT))},
                         capture_output=True, text=True, timeout=120)
    if out.returncode != 0 and "mount" in out.stderr:
        pytest.skip(f"cannot mount a tmpfs here: {out.stderr.strip()}")
    assert out.returncode == 0, out.stderr
    cores, threads = out.stdout.split()
    return int(cores), int(threads)


def test_cgroup_v2_quota_bounds_the_cores():
    # 1.5 vCPUs granted: round up to 2, whatever the host has.
    cores, threads = _cores_under({"cpu.max": "150000 100000"})
    assert cores == min(2, os.cpu_count())
    assert threads == max(1, cores // 2)


def test_cgroup_v2_one_cpu_gives_one_thread():
    assert _cores_under({"cpu.max": "100000 100000"}) == (1, 1)


def test_cgroup_v1_quota_is_read_too():
    assert _cores_under({"cpu/cpu.cfs_quota_us": "100000", "cpu/cpu.cfs_period_us": "100000"})[0] == 1


def test_no_quota_means_the_affinity():
    cores, _ = _cores_under({"cpu.max": "max 100000"})
    assert cores == len(os.sched_getaffinity(0))
    if os.cpu_count() >= 2:
        assert _cores_under({"cpu.max": "max 100000"}, affinity=1)[0] == 1
