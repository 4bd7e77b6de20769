"""`make bench`: run every bench script and write bench/RESULTS.md.

Each bench module exposes `main() -> dict` of figures measured in one run. The report
records each figure with the machine (cores, RAM, CPU), the date and the command.
`python -m bench.run_all NAME...` runs only those benches and replaces only their sections
(each section carries its own date and the load average it ran under), so one capability's
figures can be refreshed without re-running the others.
"""

from __future__ import annotations

import datetime as dt
import fcntl
import importlib
import os
import platform
import sys
import time
import traceback
from pathlib import Path

HERE = Path(__file__).parent
# In the order of the tabs; load last because it stresses everything else.
MODULES = ["tokens", "qna", "decoding", "attention", "finetune", "rag", "rag_quality", "quantized",
           "lessons", "batching", "abuse", "load"]


def machine() -> dict:
    cpu = platform.processor() or "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    ram = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    import torch

    return {"cpu": cpu, "cores": os.cpu_count(), "ram_gib": f"{ram:.1f}", "python": platform.python_version(),
            "torch": torch.__version__, "torch_cpu_capability": torch.backends.cpu.get_cpu_capability()}


def fmt(value) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def section(name: str, figures, seconds: float, started: str, load: str) -> str:
    lines = [f"## {name}", "", f"`python -m bench.{name}` — {seconds:.0f} s, {started}, load average {load}",
             "", "| figure | value |", "|---|---|"]
    if isinstance(figures, str):
        lines.append(f"| error | {figures} |")
    else:
        lines += [f"| {key} | {fmt(value)} |" for key, value in flatten(figures)]
    return "\n".join(lines)


def render(sections: dict[str, str], info: dict, started: str) -> str:
    lines = ["# Benchmark results", "",
             f"- last written: {started}", "- command: `make bench` (python -m bench.run_all [NAME...])"]
    lines += [f"- {key}: {value}" for key, value in info.items()]
    ordered = [name for name in MODULES if name in sections] + [n for n in sections if n not in MODULES]
    return "\n".join(lines) + "\n\n" + "\n\n".join(sections[name] for name in ordered) + "\n"


def read_sections(text: str) -> dict[str, str]:
    """The existing report's sections by bench name, so a partial run keeps the others."""
    sections, name = {}, None
    for line in text.splitlines():
        if line.startswith("## "):
            name = line[3:].strip()
            sections[name] = [line]
        elif name is not None:
            sections[name].append(line)
    return {key: "\n".join(lines).strip() for key, lines in sections.items()}


def flatten(figures: dict, prefix: str = ""):
    for key, value in figures.items():
        if isinstance(value, dict):
            yield from flatten(value, f"{prefix}{key}.")
        else:
            yield f"{prefix}{key}", value


def main(names: list[str] | None = None) -> Path:
    started = dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC")
    results = {}
    for name in names or MODULES:
        if not (HERE / f"{name}.py").exists():
            continue
        print(f"== bench.{name}", flush=True)
        start = time.perf_counter()
        try:
            figures = importlib.import_module(f"bench.{name}").main()
        except Exception:  # one failing bench must not hide the others' figures
            traceback.print_exc()
            figures = traceback.format_exc(limit=1).strip().splitlines()[-1]
        load = "{:.1f} {:.1f} {:.1f}".format(*os.getloadavg())
        results[name] = section(name, figures, time.perf_counter() - start, started, load)
    out = HERE / "RESULTS.md"
    with open(HERE / ".RESULTS.lock", "w") as lock:  # benches run by hand at once must not lose sections
        fcntl.flock(lock, fcntl.LOCK_EX)
        sections = read_sections(out.read_text()) if out.exists() else {}
        sections.update(results)
        out.write_text(render(sections, machine(), dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC")))
    print(f"wrote {out}")
    return out


if __name__ == "__main__":
    main(sys.argv[1:] or None)
