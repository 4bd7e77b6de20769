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
    print(usable_cores(), intra_op_threads(Settings(model_concurrency=2)), Settings.from_env({{}}).model_concurrency)
""")
# The Quantized tab's onnxruntime encoder session, one model job at a time: the threads its pool adds.
ORT_CHILD = textwrap.dedent("""
    import os, sys
    sys.path.insert(0, {root!r})
    from config import Settings
    from models.hardware import onnx_session_options
    from models.quant.schemes import OrtEncoder
    options = onnx_session_options(Settings(model_concurrency=1, torch_threads=0))
    before = len(os.listdir("/proc/self/task"))
    encoder = OrtEncoder({onnx!r}, None, options)
    print(len(os.listdir("/proc/self/task")) - before, encoder.session.get_session_options().intra_op_num_threads)
""")


def _child_under(files: dict[str, str], child: str, affinity: int | None = None) -> list[int]:
    """Run `child` (Python source) with these fake cgroup files; its printed integers."""
    setup = ["mount -t tmpfs none /sys/fs/cgroup"]
    for name, content in files.items():
        setup += [f"mkdir -p /sys/fs/cgroup/{Path(name).parent}", f"printf '%s' '{content}' > /sys/fs/cgroup/{name}"]
    run = f"{sys.executable} -c \"$CHILD\""
    if affinity is not None:
        run = f"taskset -c 0-{affinity - 1} {run}"
    script = " && ".join(setup + [run])
    out = subprocess.run(["unshare", "-m", "--propagation", "private", "sh", "-c", script],
                         env={**os.environ, "CHILD": child},
                         capture_output=True, text=True, timeout=120)
    if out.returncode != 0 and "mount" in out.stderr:
        pytest.skip(f"cannot mount a tmpfs here: {out.stderr.strip()}")
    assert out.returncode == 0, out.stderr
    return [int(word) for word in out.stdout.split()]


def _cores_under(files: dict[str, str], affinity: int | None = None) -> tuple[int, int]:
    """(usable cores, torch threads of each of two model jobs) under these cgroup files."""
    return tuple(_child_under(files, CHILD.format(root=str(ROOT)), affinity)[:2])


def _default_jobs_under(files: dict[str, str]) -> int:
    """GENAI_LAB_MODEL_CONCURRENCY's default under these cgroup files."""
    return _child_under(files, CHILD.format(root=str(ROOT)))[2]


def test_cgroup_v2_quota_bounds_the_cores():
    # 1.5 vCPUs granted: round up to 2, whatever the host has.
    cores, threads = _cores_under({"cpu.max": "150000 100000"})
    assert cores == min(2, os.cpu_count())
    assert threads == max(1, cores // 2)


def test_cgroup_v2_one_cpu_gives_one_thread():
    assert _cores_under({"cpu.max": "100000 100000"}) == (1, 1)


def test_model_jobs_default_to_two_unless_one_core_is_granted():
    assert _default_jobs_under({"cpu.max": "100000 100000"}) == 1
    assert _default_jobs_under({"cpu.max": "250000 100000"}) == min(2, len(os.sched_getaffinity(0)))


def test_cgroup_v1_quota_is_read_too():
    assert _cores_under({"cpu/cpu.cfs_quota_us": "100000", "cpu/cpu.cfs_period_us": "100000"})[0] == 1


def test_no_quota_means_the_affinity():
    cores, _ = _cores_under({"cpu.max": "max 100000"})
    assert cores == len(os.sched_getaffinity(0))
    if os.cpu_count() >= 2:
        assert _cores_under({"cpu.max": "max 100000"}, affinity=1)[0] == 1


@pytest.fixture(scope="module")
def tiny_onnx(tmp_path_factory) -> Path:
    """A one-MatMul ONNX graph: an onnxruntime session's thread pool does not depend on the model."""
    import numpy as np
    import onnx
    from onnx import TensorProto, helper

    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [None, 4])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [None, 4])
    w = helper.make_tensor("w", TensorProto.FLOAT, [4, 4], np.eye(4, dtype=np.float32).ravel().tolist())
    graph = helper.make_graph([helper.make_node("MatMul", ["x", "w"], ["y"])], "tiny", [x], [y], [w])
    path = tmp_path_factory.mktemp("onnx") / "tiny.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(path))
    return path


@pytest.mark.skipif(len(os.sched_getaffinity(0)) < 2, reason="needs 2 cores to tell the quota from the host")
def test_onnxruntime_threads_follow_the_quota(tiny_onnx):
    child = ORT_CHILD.format(root=str(ROOT), onnx=str(tiny_onnx))
    # No quota: the cores this process may use (onnxruntime's pool adds one thread per core beyond the caller's).
    cores = len(os.sched_getaffinity(0))
    assert _child_under({"cpu.max": "max 100000"}, child) == [cores - 1, cores]
    # One vCPU granted: a pool of one, the caller's thread (onnxruntime's default would add a thread per
    # physical core of the host).
    assert _child_under({"cpu.max": "100000 100000"}, child) == [0, 1]
