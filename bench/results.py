"""Results files: one JSON file per run of a subcommand, with what ran where (never a token or password)."""

import json
import os
import platform
import subprocess
import time
from pathlib import Path

from bench.target import ROOT


def machine():
    cpu = ""
    try:
        with open("/proc/cpuinfo") as info:
            cpu = next((line.split(":", 1)[1].strip() for line in info if line.startswith("model name")), "")
    except OSError:
        pass
    return {"cores": os.cpu_count(), "cpu": cpu, "kernel": platform.release(), "python": platform.python_version()}


def commit():
    def git(*args):
        return subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True).stdout.strip()

    sha = git("rev-parse", "--short", "HEAD")
    return f"{sha}+changes" if git("status", "--porcelain", "--untracked-files=no") else sha


def save(directory, kind, label, options, target, runs, **extra):
    """Write <directory>/<UTC time>-<kind>.json; its path."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    record = {
        "kind": kind,
        "label": label,
        "started": stamp,
        "commit": commit(),
        "machine": machine(),
        "target": target,
        "options": options,
        "runs": runs,
        **extra,
    }
    path = directory / f"{stamp}-{kind}.json"
    suffix = 1
    while path.exists():
        suffix += 1
        path = directory / f"{stamp}-{kind}-{suffix}.json"
    path.write_text(json.dumps(record, indent=1) + "\n")
    return path


def load(directory):
    """Every results file in the directory, oldest first."""
    return [json.loads(path.read_text()) for path in sorted(Path(directory).glob("*.json"))]
