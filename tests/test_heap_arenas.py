"""The malloc arena cap that keeps a long-running server's memory from ratcheting up.

Each run is a fresh interpreter (the cap must be set before threads start): 16 threads each
allocate and free, then glibc's own malloc_info report counts the heaps (arenas) in use.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from config import Settings

ROOT = Path(__file__).resolve().parents[1]
CHILD = """
import ctypes, ctypes.util, sys, tempfile, threading
from models.housekeeping import limit_heap_arenas

print(limit_heap_arenas(int(sys.argv[1])))
barrier = threading.Barrier(16)

def work():
    blocks = [bytearray(64_000) for _ in range(50)]  # above pymalloc's size: real malloc calls
    barrier.wait()  # all 16 threads alive and holding memory at once
    del blocks

threads = [threading.Thread(target=work) for _ in range(16)]
for t in threads: t.start()
for t in threads: t.join()
libc = ctypes.CDLL(ctypes.util.find_library("c"))
libc.fopen.restype = ctypes.c_void_p
with tempfile.NamedTemporaryFile(suffix=".xml") as report:
    stream = libc.fopen(report.name.encode(), b"w")
    libc.malloc_info(0, ctypes.c_void_p(stream))
    libc.fclose(ctypes.c_void_p(stream))
    print(open(report.name).read().count("<heap nr="))
"""


def heaps_after_16_threads(cap: int) -> tuple[str, int]:
    out = subprocess.run([sys.executable, "-c", CHILD, str(cap)], cwd=ROOT, capture_output=True, text=True,
                         timeout=120, check=True).stdout.split()
    return out[0], int(out[1])


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc only")
def test_cap_keeps_threads_on_two_heaps_where_glibc_would_open_more():
    assert heaps_after_16_threads(2) == ("True", 2)
    capped_off, heaps = heaps_after_16_threads(0)
    assert capped_off == "False" and heaps > 2


def test_heap_arenas_setting():
    assert Settings.from_env({}).heap_arenas == 2
    assert Settings.from_env({"GENAI_LAB_HEAP_ARENAS": "0"}).heap_arenas == 0
