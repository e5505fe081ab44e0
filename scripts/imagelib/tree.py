"""The initramfs tree: the skeleton, rootfs/ and config/ copied in (`.in` files substituted),
busybox and its applet links, keel and its names, the service definitions, the baseline's
busybox init."""

import re
import shutil
from pathlib import Path

from imagelib.util import ROOT, die, run

BUSYBOX = Path("/bin/busybox")  # from busybox-static: a static binary

# Busybox applets that must not shadow Keel: /sbin/init and /init are Keel's.
BUSYBOX_SKIP = {"init", "linuxrc"}


def copy_tree(src, dest, substitutions):
    """Copies src into dest; `name.in` files become `name` with @KEY@ substituted."""
    for path in sorted(src.rglob("*")):
        rel = path.relative_to(src)
        target = dest / rel
        if path.is_dir():
            target.mkdir(parents=True, exist_ok=True)
        elif path.name.endswith(".in"):
            text = path.read_text()
            for key, value in substitutions.items():
                text = text.replace(f"@{key}@", value)
            if left := re.search(r"@[A-Z_]+@", text):
                die(f"{path.relative_to(ROOT)}: unknown substitution {left.group(0)}")
            target = target.with_name(path.name.removesuffix(".in"))
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(text)
            target.chmod(path.stat().st_mode & 0o7777)
        else:
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(path, target, follow_symlinks=False)


def skeleton(tree):
    for d in ("proc", "sys", "dev", "run", "tmp", "mnt", "var/lib/keel", "bin", "sbin",
              "usr/bin", "usr/sbin", "etc", "root"):
        (tree / d).mkdir(parents=True, exist_ok=True)
    (tree / "tmp").chmod(0o1777)
    (tree / "root").chmod(0o700)
    (tree / "var/lib/keel").chmod(0o700)
    (tree / "etc/mtab").symlink_to("/proc/self/mounts")


def install_busybox(tree):
    shutil.copy2(BUSYBOX, tree / "bin/busybox")
    applets = run([BUSYBOX, "--list"]).split()
    for applet in applets:
        if applet not in BUSYBOX_SKIP and applet != "busybox":
            (tree / "bin" / applet).symlink_to("busybox")
    return applets


def install_keel(tree, keel, init_override):
    shutil.copy2(keel, tree / "usr/bin/keel")
    (tree / "usr/bin/keel").chmod(0o755)
    for name in ("ros", "keeld"):
        (tree / "usr/bin" / name).symlink_to("keel")
    # argv[0] picks the personality: the kernel runs /init, so these two are "init".
    (tree / "sbin/init").symlink_to("../usr/bin/keel")
    if init_override:
        shutil.copy2(init_override, tree / "init")
        (tree / "init").chmod(0o755)
    else:
        (tree / "init").symlink_to("usr/bin/keel")
    # The configuration: config/* at /etc/keel, each services/NAME/service.yml as
    # /etc/keel/services/NAME.yml, where keeld reads its service definitions (the images are
    # imagelib.images' work).
    copy_tree(ROOT / "config", tree / "etc/keel", {})
    (tree / "etc/keel/services").mkdir(exist_ok=True)
    for f in sorted((ROOT / "services").glob("*/service.yml")):
        shutil.copy2(f, tree / "etc/keel/services" / f"{f.parent.name}.yml")


BASELINE_INITTAB = """\
# Baseline image (scripts/build-image --baseline): busybox init on the same kernel and
# modules as Keel, for scripts/bench-boot's comparison.
::sysinit:/etc/init.d/rcS
::respawn:-/bin/sh
::ctrlaltdel:/bin/reboot
::shutdown:/bin/umount -a -r
"""

BASELINE_RCS = """\
#!/bin/sh
# Markers for scripts/bench-boot: "baseline: init started", "baseline: system ready".
# With baseline.poweroff on the kernel command line it powers off once ready.
echo "baseline: init started"
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
mkdir -p /dev/pts && mount -t devpts devpts /dev/pts
mount -t tmpfs tmpfs /run
mount -t cgroup2 cgroup2 /sys/fs/cgroup
for m in $(cat /etc/modules); do modprobe "$m" || echo "baseline: modprobe $m failed"; done
echo 1 > /proc/sys/kernel/modules_disabled
mount -t ext4 LABEL=KEEL_STATE /var/lib/keel 2>/dev/null || mount -t tmpfs tmpfs /var/lib/keel
hostname keel-baseline
ip link set lo up
read up _ < /proc/uptime
echo "baseline: system ready (uptime ${up}s)"
grep -qw baseline.poweroff /proc/cmdline && poweroff -f
exit 0
"""


def install_baseline(tree, allow_list):
    (tree / "init").symlink_to("bin/busybox")
    (tree / "etc/init.d").mkdir(parents=True)
    (tree / "etc/inittab").write_text(BASELINE_INITTAB)
    (tree / "etc/init.d/rcS").write_text(BASELINE_RCS)
    (tree / "etc/init.d/rcS").chmod(0o755)
    (tree / "etc/modules").write_text("".join(n + "\n" for n in allow_list))


