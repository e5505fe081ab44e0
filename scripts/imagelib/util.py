"""Paths, logging and small helpers shared by scripts/build-image, imagelib and the recipes."""

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent.parent
BUILD = ROOT / "build"
CACHE = BUILD / "cache"

# Reproducible archives: every entry gets this mtime.
EPOCH = int(os.environ.get("SOURCE_DATE_EPOCH", "0"))


def log(msg):
    print(f"build-image: {msg}", flush=True)


def die(msg):
    print(f"build-image: error: {msg}", file=sys.stderr)
    sys.exit(1)


def run(cmd, **kw):
    """Runs a command, dying with its output when it fails."""
    r = subprocess.run(cmd, text=True, capture_output=True, **kw)
    if r.returncode != 0:
        die(f"{' '.join(map(str, cmd))} failed ({r.returncode}):\n{r.stdout}{r.stderr}")
    return r.stdout


def sha256(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def fingerprint(paths_and_values):
    """A digest of files (a directory: every file under it, bytecode caches left out, as
    Python writes them on import) and JSON values, for the up-to-date checks."""
    h = hashlib.sha256()
    for item in paths_and_values:
        if isinstance(item, Path):
            for p in [item] if not item.is_dir() else sorted(item.rglob("*")):
                if "__pycache__" in p.parts:
                    continue
                h.update(str(p.relative_to(ROOT) if p.is_relative_to(ROOT) else p).encode())
                if p.is_symlink():
                    h.update(os.readlink(p).encode())
                elif p.is_file():
                    h.update(b"%o" % (p.stat().st_mode & 0o7777) + sha256(p).encode())
        else:
            h.update(json.dumps(item).encode())
        h.update(b"\0")
    return h.hexdigest()
