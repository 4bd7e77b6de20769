"""Dry-run the Hugging Face Space's install command in a throwaway venv; fail if it cannot resolve.

A Gradio Space installs with pip's resolver (not --no-deps, as `make setup` does):

    pip install -r requirements.txt "gradio[oauth,mcp]==<sdk_version>" "uvicorn>=0.14.0" "websockets>=10.4" spaces

so a pin that `pip check` accepts locally can still be refused there (gradio's mcp extra caps
pydantic, for one). sdk_version and python_version come from README.md's front matter. The venv
gets a current pip, as a Space has (an old pip downloads every wheel to read its metadata).
Needs the package index; nothing is installed. On a Space the CPU-only torch pin (+cpu) is
already installed from pre-requirements.txt; here pip finds it where pip is configured to look
(PIP_FIND_LINKS / PIP_EXTRA_INDEX_URL).

Usage: python tools/space_check.py [--pip pip==X.Y]
"""

from __future__ import annotations

import argparse
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
TIMEOUT_S = 15 * 60
NOISE = ("Collecting ", "Downloading ", "Using cached ", "Requirement already", "Looking in ", "Processing ",
         "  Downloading ", "  Using cached ", "WARNING: Location ", "━")


def front_matter(readme: Path) -> dict[str, str]:
    """Top-level `key: value` pairs of the YAML block at the top of README.md (no YAML parser needed)."""
    lines = readme.read_text(encoding="utf-8").splitlines()
    if not lines or lines[0].strip() != "---":
        raise SystemExit(f"{readme} has no front matter")
    values = {}
    for line in lines[1:]:
        if line.strip() == "---":
            return values
        if line[:1].isalpha() and ":" in line:
            key, value = line.split(":", 1)
            values[key.strip()] = value.strip().strip("\"'")
    raise SystemExit(f"{readme}: front matter is not closed")


def space_install_args(sdk_version: str) -> list[str]:
    """What the Space passes to `pip install`."""
    return ["-r", "requirements.txt", f"gradio[oauth,mcp]=={sdk_version}", "uvicorn>=0.14.0", "websockets>=10.4",
            "spaces"]


def interpreter(python_version: str) -> str:
    """The python the Space runs (python_version), as found on PATH."""
    if ".".join(map(str, sys.version_info[:2])) == python_version:
        return sys.executable
    found = shutil.which(f"python{python_version}")
    if not found:
        raise SystemExit(f"space-check needs python{python_version} (the Space's python_version) on PATH")
    return found


def run(cmd: list[str]) -> subprocess.CompletedProcess:
    """Output and errors in one stream, in the order pip wrote them."""
    return subprocess.run(cmd, cwd=ROOT, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                          text=True, timeout=TIMEOUT_S)


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.strip().splitlines()[0])
    parser.add_argument("--pip", default="pip", help="pip requirement for the throwaway venv, e.g. pip==26.3")
    args = parser.parse_args(argv)
    meta = front_matter(ROOT / "README.md")
    sdk_version, python_version = meta.get("sdk_version"), meta.get("python_version")
    if not sdk_version or not python_version:
        raise SystemExit("README.md front matter needs sdk_version and python_version")
    start = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="space-check-") as tmp:
        venv = Path(tmp) / "venv"
        made = run([interpreter(python_version), "-m", "venv", str(venv)])
        if made.returncode:
            print(made.stdout, file=sys.stderr)
            return 1
        pip = [str(venv / "bin" / "python"), "-m", "pip", "--disable-pip-version-check"]
        upgraded = run([*pip, "install", "--quiet", "--root-user-action=ignore", args.pip])
        if upgraded.returncode:
            print(upgraded.stdout, file=sys.stderr)
            return 1
        install = space_install_args(sdk_version)
        print(f"space-check: pip install {shlex.join(install)}  (dry run, python {python_version})", flush=True)
        try:
            result = run([*pip, "install", "--dry-run", "--root-user-action=ignore", *install])
        except subprocess.TimeoutExpired:
            print(f"space-check: no answer from the index within {TIMEOUT_S} s", file=sys.stderr)
            return 1
    seconds = time.perf_counter() - start
    if result.returncode:
        report = [line for line in result.stdout.splitlines()
                  if line.strip() and not line.lstrip().startswith(NOISE)]
        print("\n".join(report), file=sys.stderr)
        print(f"space-check: FAILED, the Space's install command does not resolve ({seconds:.0f} s)", file=sys.stderr)
        return 1
    would = next((line for line in result.stdout.splitlines() if line.startswith("Would install")), "")
    print(f"space-check: resolves, {len(would.split()) - 2} packages ({seconds:.0f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
