"""ntpd for the ntp service's image (busybox's, one applet, static with musl).

Debian's busybox packages (busybox, busybox-static) are built without ntpd, so the ntp
service's ntpd is built here: busybox from Debian's source package of the busybox-static in
use (Debian's patches applied), configured with that one applet, linked statically against
musl: about 180 KB, where glibc's static resolver alone would pull in a megabyte. Cached in
build/cache/ntpd/ by busybox version, musl version and configuration.

No server (-l), no /etc/ntp.conf, no authentication: a client that only sets the clock.
"""

import hashlib
import json
import os
import re
import shutil
import subprocess
import tempfile
from pathlib import Path

from imagelib.apt import ensure_musl, fetch_source
from imagelib.util import die, log, run
from recipes import Package

NTPD_CONFIG = {"STATIC": True, "NTPD": True, "FEATURE_IPV6": True, "LFS": True,
               "FEATURE_NTPD_SERVER": False, "FEATURE_NTPD_CONF": False, "FEATURE_NTP_AUTH": False}


def kconfig_line(option, on):
    return f"CONFIG_{option}=y" if on else f"# CONFIG_{option} is not set"


def build(cache):
    """/usr/sbin/ntpd (cached), and the busybox source version it was built from."""
    version = run(["dpkg-query", "-W", "-f", "${source:Version}", "busybox-static"]).strip()
    if not version:
        die("busybox-static is not installed (scripts/setup installs it)")
    musl = ensure_musl()
    key = hashlib.sha256(json.dumps([version, musl, NTPD_CONFIG], sort_keys=True).encode()).hexdigest()[:16]
    out = cache / "ntpd" / key / "ntpd"
    if out.exists():
        return package(version, out)

    dsc = fetch_source("busybox", version, cache)
    log(f"building ntpd from busybox {version} (musl, static)")
    with tempfile.TemporaryDirectory(dir=cache) as tmp:
        src = Path(tmp) / "busybox"
        run(["dpkg-source", "--no-check", "-x", dsc, src])  # hashes were checked by apt
        # Everything off, then NTPD_CONFIG; oldconfig gives what it does not name its default.
        run(["make", "allnoconfig"], cwd=src)
        config = (src / ".config").read_text()
        for option, on in NTPD_CONFIG.items():
            config = re.sub(rf"^(# )?CONFIG_{option}[= ].*\n", "", config, flags=re.M)
            config += kconfig_line(option, on) + "\n"
        (src / ".config").write_text(config)
        subprocess.run(["make", "oldconfig"], cwd=src, input="\n" * 200, text=True,
                       capture_output=True, check=True)
        config = (src / ".config").read_text().splitlines()
        for option, on in NTPD_CONFIG.items():
            if kconfig_line(option, on) not in config:
                die(f"busybox {version}: cannot set {kconfig_line(option, on)}")
        run(["make", f"-j{os.cpu_count() or 2}", "CC=musl-gcc", "busybox"], cwd=src)
        out.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(src / "busybox", out.with_suffix(".tmp"))
        os.replace(out.with_suffix(".tmp"), out)
    return package(version, out)


def package(version, ntpd):
    return Package(version, {"usr/sbin/ntpd": ntpd}, f"ntpd from busybox {version}, musl, static")


