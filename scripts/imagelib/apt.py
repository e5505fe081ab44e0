"""Debian's source packages and the musl toolchain, for the recipes that build from source
(scripts/recipes/): a private deb-src view of the system's apt sources, `apt-get source`,
musl-gcc, candidate versions from the package lists."""

import json
import os
import re
import shutil
import subprocess
from pathlib import Path

from imagelib.util import CACHE, die, log, run


def apt_source_options(scratch):
    """apt-get options for a private deb-src view of the system's own package sources: the
    same archives and keys as `apt-get download`, with Sources indexes kept in `scratch`, so
    the host's apt configuration is neither needed nor changed."""
    parts = scratch / "sources.list.d"
    lists = scratch / "lists"
    shutil.rmtree(parts, ignore_errors=True)
    parts.mkdir(parents=True)
    (lists / "partial").mkdir(parents=True, exist_ok=True)
    apt = Path("/etc/apt")
    n = 0
    for f in sorted(apt.glob("sources.list.d/*.sources")):
        text = re.sub(r"^Types:.*$", "Types: deb-src", f.read_text(), flags=re.M)
        (parts / f.name).write_text(text)
        n += 1
    for f in [apt / "sources.list", *sorted(apt.glob("sources.list.d/*.list"))]:
        if f.exists():
            lines = [re.sub(r"^deb(\s)", r"deb-src\1", l) for l in f.read_text().splitlines()
                     if re.match(r"deb\s", l)]
            if lines:
                (parts / f"{f.stem}-{n}.list").write_text("\n".join(lines) + "\n")
                n += 1
    if not n:
        die("no apt sources in /etc/apt to fetch source packages from")
    return ["-o", "Dir::Etc::SourceList=/dev/null", "-o", f"Dir::Etc::SourceParts={parts}",
            "-o", f"Dir::State::Lists={lists}", "-o", "APT::Sandbox::User=root"]



def ensure_musl():
    """musl-gcc (musl-tools, which scripts/setup installs), installed here if missing; returns
    the musl version, part of the cache keys of what is built with it."""
    if not shutil.which("musl-gcc"):
        log("installing musl-tools (musl-gcc, for the recipes built from source)")
        install = ["apt-get", "install", "-y", "-q", "--no-install-recommends", "musl-tools"]
        env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
        if subprocess.run(install, env=env, capture_output=True).returncode != 0:
            run(["apt-get", "update", "-q"])  # the package lists may be missing or old
            run(install, env=env)
    return run(["dpkg-query", "-W", "-f", "${Version}", "musl-dev"]).strip()


def fetch_source(package, version, cache=CACHE):
    """The .dsc of Debian's source package `package` at `version`, fetched once with
    `apt-get source --download-only` into <cache>/<package>-source/."""
    src_cache = cache / f"{package}-source"
    dsc = src_cache / f"{package}_{version.split(':')[-1]}.dsc"
    if not dsc.exists():
        log(f"fetching {package} {version} source (apt-get source)")
        src_cache.mkdir(parents=True, exist_ok=True)
        opts = apt_source_options(cache / "apt-source")
        run(["apt-get", *opts, "update", "-q"])
        run(["apt-get", *opts, "source", "--download-only", "-q", f"{package}={version}"], cwd=src_cache)
        if not dsc.exists():
            die(f"apt-get source {package}={version}: no {dsc.name}")
    return dsc


def apt_candidates(packages, memo):
    """{package: candidate version} from the package lists, or None when one has none. Kept in
    the file `memo` until the lists change (apt-cache takes a second)."""
    lists = Path("/var/lib/apt/lists")
    key = max((p.stat().st_mtime_ns for p in lists.glob("*Packages*")), default=0)
    if key and memo.exists():
        known = json.loads(memo.read_text())
        if known["lists"] == key and sorted(known["versions"]) == sorted(packages):
            return known["versions"]
    r = subprocess.run(["apt-cache", "policy", *packages], text=True, capture_output=True)
    found = dict(re.findall(r"^(\S+):\n\s+Installed: .*\n\s+Candidate: (\S+)", r.stdout, re.M))
    if any(found.get(p, "(none)") == "(none)" for p in packages):
        return None
    memo.parent.mkdir(parents=True, exist_ok=True)
    memo.write_text(json.dumps({"lists": key, "versions": {p: found[p] for p in packages}}))
    return {p: found[p] for p in packages}


