"""The kernel: a Debian kernel package resolved, fetched and unpacked in build/cache (the host's
/boot is never touched), its uncompressed vmlinux, and the allow-listed modules with their
dependencies."""

import json
import lzma
import os
import re
import shutil
import subprocess
import tempfile
from pathlib import Path

from imagelib.util import CACHE, die, log, run


class Kernel:
    """A Debian kernel package unpacked in build/cache/kernel/<abi>/ (with a full modules.dep)."""

    def __init__(self, package, version):
        self.package = package                        # linux-image-6.1.0-56-amd64
        self.version = version                        # Debian package version, 6.1.192-2
        self.abi = package.removeprefix("linux-image-")  # uname -r: 6.1.0-56-amd64
        self.dir = CACHE / "kernel" / self.abi
        self.deb = CACHE / f"{package}_{version}_amd64.deb"
        self.modules = self.dir / "lib" / "modules" / self.abi
        self.vmlinuz = self.dir / "boot" / f"vmlinuz-{self.abi}"
        self.config = self.dir / "boot" / f"config-{self.abi}"


def apt_candidate_kernel():
    """linux-image-amd64's dependency and that package's candidate version, or None. apt-cache
    takes over a second, so the answer is kept until the package lists change."""
    lists = Path("/var/lib/apt/lists")
    key = max((p.stat().st_mtime_ns for p in lists.glob("*Packages*")), default=0)
    memo = CACHE / "kernel-candidate.json"
    if key and memo.exists():
        known = json.loads(memo.read_text())
        if known["lists"] == key:
            return Kernel(known["package"], known["version"])

    r = subprocess.run(["apt-cache", "depends", "linux-image-amd64"], text=True, capture_output=True)
    m = re.search(r"Depends: (linux-image-[0-9][^\s]*-amd64)", r.stdout)
    if not m:
        return None
    package = m.group(1)
    r = subprocess.run(["apt-cache", "policy", package], text=True, capture_output=True)
    v = re.search(r"Candidate: (\S+)", r.stdout)
    if not v or v.group(1) == "(none)":
        return None
    CACHE.mkdir(parents=True, exist_ok=True)
    memo.write_text(json.dumps({"lists": key, "package": package, "version": v.group(1)}))
    return Kernel(package, v.group(1))


def cached_kernel():
    """The newest kernel already unpacked in the cache, for working without the package lists."""
    stamps = sorted((CACHE / "kernel").glob("*/.unpacked"), key=lambda p: p.stat().st_mtime)
    if not stamps:
        return None
    info = json.loads(stamps[-1].read_text())
    return Kernel(info["package"], info["version"])


def fetch_kernel(requested):
    if requested:  # --kernel PACKAGE=VERSION
        package, _, version = requested.partition("=")
        kernel = Kernel(package, version) if version else None
        if kernel is None:
            die("--kernel wants PACKAGE=VERSION, e.g. linux-image-6.1.0-56-amd64=6.1.192-2")
    else:
        kernel = apt_candidate_kernel()
        if kernel is None and cached_kernel() is None:
            log("no kernel candidate in the package lists: apt-get update")
            run(["apt-get", "update", "-q"])
            kernel = apt_candidate_kernel()
        if kernel is None:
            kernel = cached_kernel()
            if kernel is None:
                die("cannot resolve linux-image-amd64's kernel package (apt-cache depends linux-image-amd64)")
            log(f"package lists unavailable: using the cached {kernel.package} {kernel.version}")

    stamp = kernel.dir / ".unpacked"
    if stamp.exists() and json.loads(stamp.read_text())["version"] == kernel.version:
        return kernel

    CACHE.mkdir(parents=True, exist_ok=True)
    if not kernel.deb.exists():
        log(f"downloading {kernel.package} {kernel.version}")
        with tempfile.TemporaryDirectory(dir=CACHE) as tmp:
            # The _apt sandbox user cannot write into the build tree; the download is a
            # signature-checked archive member either way.
            run(["apt-get", "download", "-q", "-o", "APT::Sandbox::User=root",
                 f"{kernel.package}={kernel.version}"], cwd=tmp)
            debs = list(Path(tmp).glob("*.deb"))
            if len(debs) != 1:
                die(f"apt-get download {kernel.package}: expected one .deb, got {debs}")
            debs[0].rename(kernel.deb)
    log(f"unpacking {kernel.deb.name}")
    shutil.rmtree(kernel.dir, ignore_errors=True)
    kernel.dir.mkdir(parents=True)
    run(["dpkg-deb", "-x", kernel.deb, kernel.dir])
    # Debian generates modules.dep in the package's postinst; we need it to resolve the
    # allow-list's dependencies.
    run(["depmod", "-b", kernel.dir, kernel.abi])
    stamp.write_text(json.dumps({"package": kernel.package, "version": kernel.version}))
    return kernel


def extract_vmlinux(kernel):
    """The uncompressed kernel (ELF) inside Debian's xz-compressed bzImage, cached next to it.

    It is a development convenience, not part of the image: QEMU boots it through the PVH
    entry point, which skips the kernel's self-decompression (about 3 s under TCG) and, with
    it, KASLR. scripts/run uses it under TCG unless told --vmlinuz.
    """
    vmlinux = kernel.dir / "vmlinux"
    if vmlinux.exists():
        return vmlinux
    data = kernel.vmlinuz.read_bytes()
    start = data.find(b"\xfd7zXZ\x00")
    if start < 0:
        log(f"{kernel.vmlinuz.name} is not xz-compressed: no vmlinux for the PVH boot")
        return None
    elf = lzma.LZMADecompressor().decompress(data[start:])
    if not elf.startswith(b"\x7fELF") or b"Xen\x00" not in elf:
        log(f"{kernel.vmlinuz.name}: the payload is not an ELF kernel with a PVH note: no vmlinux")
        return None
    tmp = vmlinux.with_suffix(".tmp")
    tmp.write_bytes(elf)
    os.replace(tmp, vmlinux)
    return vmlinux


def kernel_config(kernel, option):
    m = re.search(rf"^CONFIG_{option}=(\S+)", kernel.config.read_text(), re.M)
    return m.group(1) if m else None


def module_name(path):
    """kernel/drivers/char/hw_random/virtio-rng.ko.xz -> virtio_rng"""
    return Path(path).name.split(".ko")[0].replace("-", "_")


def resolve_modules(kernel, wanted, origin):
    """The allow-listed modules plus every dependency, as paths relative to the modules dir."""
    deps, paths = {}, {}
    for line in (kernel.modules / "modules.dep").read_text().splitlines():
        target, _, rest = line.partition(":")
        name = module_name(target)
        paths[name] = target
        deps[name] = [module_name(d) for d in rest.split()]
    builtin = {module_name(l) for l in (kernel.modules / "modules.builtin").read_text().split()}

    chosen, skipped = [], []
    def visit(name):
        if name in chosen:
            return
        for d in deps[name]:
            visit(d)
        chosen.append(name)

    for name in wanted:
        if name in builtin:
            skipped.append(name)
        elif name in paths:
            visit(name)
        else:
            die(f"{origin}: module '{name}' is not in {kernel.package} (neither a module nor built in)")
    if skipped:
        log(f"built into {kernel.abi}, nothing to copy: {' '.join(skipped)}")
    return [paths[n] for n in chosen]


def install_modules(kernel, tree, module_paths):
    dest = tree / "lib" / "modules" / kernel.abi
    for rel in module_paths:
        (dest / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(kernel.modules / rel, dest / rel)  # as shipped: signed, never stripped
    for f in ("modules.builtin", "modules.builtin.modinfo"):
        shutil.copy2(kernel.modules / f, dest / f)
    # modules.order lists the subset, in the kernel's order; depmod regenerates the rest
    # (modules.dep, modules.alias, the .bin indexes) for the subset.
    names = {module_name(p) for p in module_paths}
    order = [l for l in (kernel.modules / "modules.order").read_text().splitlines() if module_name(l) in names]
    (dest / "modules.order").write_text("".join(l + "\n" for l in order))
    run(["depmod", "-b", tree, kernel.abi])
    return sum((dest / rel).stat().st_size for rel in module_paths)

