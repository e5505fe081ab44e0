"""The system services' images: each services/NAME/ with an image.yml becomes a directory
rootfs at IMAGES/NAME, which keeld runs the service in (services/NAME/service.yml says
`image: NAME`). Nothing here knows a service or a package by name.

image.yml, every key optional:
  busybox   busybox applet links in /bin. The busybox binary is the host's /bin/busybox,
            hard-linked: one copy in the archive and in memory for the host and all images.
            (The binary still holds every applet, reachable as `busybox NAME`: the links
            keep PATH to what the service uses; the limits are the container's.)
  users     /etc/passwd entries, taken from rootfs/etc/passwd (default: [root]); /etc/group
            gets each one's primary group (by gid) from rootfs/etc/group.
  groups    extra /etc/group entries.
  copy      files of the host tree copied in (same path).
  links     symlinks: path -> target.
  empty     empty files, as mount points for files bound in from the host.
  dirs      directories (mode 0755 unless `modes` says otherwise).
  packages  recipes (scripts/recipes/NAME.py) whose files are copied in.
  modes     path -> octal mode as a string ("0700"), applied last.
The image's own files are services/NAME/files/ (scripts and /etc files; `.in` files get
rootfs/'s substitutions). Every image also gets the mount points keeld and the runtime use
(MOUNT_POINTS), so a read-only root needs nothing created in it.
"""

import os
import shutil

import yaml

from imagelib.tree import copy_tree
from imagelib.util import ROOT, die

IMAGES = "usr/share/keel/images"  # keeld's images_dir (service/service_spec.h)
MOUNT_POINTS = ["proc", "sys", "dev", "tmp", "run", "etc"]
KEYS = {"busybox", "users", "groups", "copy", "links", "empty", "dirs", "packages", "modes"}


def read_specs(services=ROOT / "services"):
    """{image name: its image.yml, checked} for every services/NAME/image.yml, by name."""
    specs = {}
    for d in sorted(p for p in services.iterdir() if p.is_dir()):
        origin = d.relative_to(ROOT) if d.is_relative_to(ROOT) else d
        if not (d / "service.yml").exists():
            die(f"{origin}: no service.yml")
        if not (d / "image.yml").exists():
            if (d / "files").exists():
                die(f"{origin}/files: no image.yml to say what else goes into the image")
            continue
        try:
            spec = yaml.safe_load((d / "image.yml").read_text()) or {}
        except yaml.YAMLError as e:
            die(f"{origin}/image.yml: {e}")
        if not isinstance(spec, dict) or set(spec) - KEYS:
            die(f"{origin}/image.yml: expected a mapping with the keys {', '.join(sorted(KEYS))}")
        for key, value in (spec.get("modes") or {}).items():
            if not isinstance(value, str) or not value.isdigit():
                die(f"{origin}/image.yml: modes.{key}: an octal mode as a string, e.g. \"0700\"")
        specs[d.name] = spec
    return specs


def account_entries(path):
    return {l.split(":", 1)[0]: l for l in path.read_text().splitlines() if l and not l.startswith("#")}


def account_lines(path, names):
    lines = account_entries(path)
    missing = [n for n in names if n not in lines]
    if missing:
        die(f"{path.name} in rootfs/ has no entry for {', '.join(missing)} (a service image needs it)")
    return "".join(lines[n] + "\n" for n in names)


def primary_groups(tree, users):
    """The names of the users' primary groups, by gid, in rootfs/etc/group."""
    passwd, groups = account_entries(tree / "etc/passwd"), account_entries(tree / "etc/group")
    by_gid = {l.split(":")[2]: name for name, l in groups.items()}
    names = []
    for user in users:
        gid = passwd[user].split(":")[3] if user in passwd else None
        if gid not in by_gid:
            die(f"rootfs/etc/group has no group {gid} (the primary group of {user})")
        if by_gid[gid] not in names:
            names.append(by_gid[gid])
    return names



def install(tree, specs, packages, applets_available, substitutions):
    """Builds every image of specs under IMAGES; packages maps a recipe name to its built
    Package. Returns {name: bytes of the files it adds}, hard links to the host's busybox not
    counted."""
    sizes = {}
    for name, spec in specs.items():
        img = tree / IMAGES / name
        for d in MOUNT_POINTS + spec.get("dirs", []):
            (img / d).mkdir(parents=True, exist_ok=True)
        (img / "tmp").chmod(0o1777)
        if spec.get("busybox"):
            (img / "bin").mkdir()
            os.link(tree / "bin/busybox", img / "bin/busybox")
            for applet in spec["busybox"]:
                if applet not in applets_available:
                    die(f"image {name}: busybox has no applet '{applet}'")
                (img / "bin" / applet).symlink_to("busybox")
        users = spec.get("users", ["root"])
        (img / "etc/passwd").write_text(account_lines(tree / "etc/passwd", users))
        groups = primary_groups(tree, users)
        groups += [g for g in spec.get("groups", []) if g not in groups]
        (img / "etc/group").write_text(account_lines(tree / "etc/group", groups))
        for rel in spec.get("copy", []):
            shutil.copy2(tree / rel, img / rel)
        for rel, target in spec.get("links", {}).items():
            (img / rel).parent.mkdir(parents=True, exist_ok=True)
            (img / rel).symlink_to(target)
        for rel in spec.get("empty", []):
            (img / rel).parent.mkdir(parents=True, exist_ok=True)
            (img / rel).touch(0o755)
        for package in spec.get("packages", []):
            for rel, source in sorted(packages[package].files.items()):
                (img / rel).parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(source, img / rel)
        if (ROOT / "services" / name / "files").exists():
            copy_tree(ROOT / "services" / name / "files", img, substitutions)
        for rel, mode in spec.get("modes", {}).items():
            (img / rel).chmod(int(mode, 8))
        sizes[name] = sum(p.lstat().st_size for p in img.rglob("*")
                          if p.is_file() and not p.is_symlink() and p.name != "busybox")
    return sizes
