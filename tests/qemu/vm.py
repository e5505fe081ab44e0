"""Boots the real Keel image in QEMU and drives its serial console as a user would.

    with VM(append="keel.recovery", state="fresh") as vm:
        vm.wait_for("system ready")
        code, out = vm.run("cat /proc/sys/kernel/modules_disabled")

Each command's output is read up to a unique end marker carrying its exit code. On a
failure the whole console log is printed (the caller's unittest failure shows it).
"""
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import unittest
import uuid

import pexpect

ROOT = os.environ.get("KEEL_SOURCE_DIR") or os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
# KEEL_IMAGE: another image directory (scripts/build-image --output DIR).
IMAGE = os.environ.get("KEEL_IMAGE") or os.path.join(ROOT, "build/image")
# What scripts/run adds for QEMU's PC machine (see there): PCI interrupts routed without ACPI.
QEMU_APPEND = "pci=noacpi"


def accel():
    """kvm only where this image's kernel really boots under it, else tcg: scripts/accel probes
    (on some machines /dev/kvm opens but the kernel hangs) and honours KEEL_ACCEL=kvm|tcg."""
    global _ACCEL
    if _ACCEL is None:
        r = subprocess.run([os.path.join(ROOT, "scripts/accel"), os.path.join(IMAGE, "vmlinuz")],
                           capture_output=True, text=True, cwd=ROOT, timeout=120)
        _ACCEL = "kvm" if r.stdout.strip() == "kvm" else "tcg"
        sys.stderr.write(r.stderr)
    return _ACCEL


_ACCEL = None


def free_port():
    """A TCP port on 127.0.0.1 that nothing listens on now (for a forward into the guest)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# The state disk, read and written from the host between boots (e2fsprogs' debugfs).
def disk_cat(disk, path):
    r = subprocess.run(["debugfs", "-R", f"cat {path}", disk], capture_output=True, text=True)
    return r.stdout


def disk_mkdir(disk, path):
    subprocess.run(["debugfs", "-w", "-R", f"mkdir {path}", disk], capture_output=True, check=True)


def disk_write(disk, local, path):
    subprocess.run(["debugfs", "-w", "-R", f"rm {path}", disk], capture_output=True)
    r = subprocess.run(["debugfs", "-w", "-R", f"write {local} {path}", disk], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr


class VM:
    def __init__(self, append="", state="fresh", memory="512M", timeout=90, ssh_port=None):
        self.append = append
        # A local port forwarded to the guest's port 22 (as scripts/run --ssh-port), or None.
        self.ssh_port = ssh_port
        self.state = state  # "fresh": a new KEEL_STATE disk; "none"; or a path to reuse
        self.memory = memory
        self.timeout = timeout
        self.tmp = tempfile.mkdtemp(prefix="keel-qemu-")
        self.log_path = os.path.join(self.tmp, "console.log")
        self.child = None
        self.disk = None

    # -- lifecycle --------------------------------------------------------------------------
    def make_state_disk(self, size="64M", quota=True):
        """As scripts/run makes it: ext4 with project quotas (quota=False: an older disk)."""
        path = os.path.join(self.tmp, "state.img")
        subprocess.run(["truncate", "-s", size, path], check=True)
        features = ["-O", "quota,project", "-E", "quotatype=prjquota"] if quota else []
        subprocess.run(["mkfs.ext4", "-q", "-F", "-L", "KEEL_STATE", *features, path], check=True)
        return path

    def command(self):
        with open(os.path.join(IMAGE, "cmdline")) as f:
            cmdline = f.read().strip()
        acc = accel()
        # Under TCG the uncompressed kernel boots about 3 s faster (no self-decompression),
        # as scripts/run does.
        kernel = "vmlinux" if acc == "tcg" and os.path.exists(os.path.join(IMAGE, "vmlinux")) else "vmlinuz"
        cmd = ["qemu-system-x86_64", "-m", self.memory, "-smp", "2", "-nographic", "-no-reboot",
               "-accel", acc, "-cpu", "max" if acc == "tcg" else "host",
               "-kernel", os.path.join(IMAGE, kernel), "-initrd", os.path.join(IMAGE, "initrd.img"),
               "-append", f"{cmdline} {QEMU_APPEND} {self.append}".strip(),
               "-device", "virtio-rng-pci",
               "-netdev", "user,id=net0" + (f",hostfwd=tcp:127.0.0.1:{self.ssh_port}-:22" if self.ssh_port else ""),
               "-device", "virtio-net-pci,netdev=net0"]
        if self.disk:
            cmd += ["-drive", f"file={self.disk},format=raw,if=virtio"]
        return cmd

    def start(self):
        if self.state == "fresh":
            self.disk = self.make_state_disk()
        elif self.state != "none":
            self.disk = self.state
        self.logfile = open(self.log_path, "w")
        cmd = self.command()
        self.child = pexpect.spawn(cmd[0], cmd[1:], encoding="utf-8", codec_errors="replace",
                                   timeout=self.timeout, logfile=self.logfile, dimensions=(50, 200))
        return self

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()
        return False

    def stop(self):
        if self.child is not None and self.child.isalive():
            self.child.terminate(force=True)
        if getattr(self, "logfile", None):
            self.logfile.close()

    def cleanup(self):
        self.saved_console = self.console()
        shutil.rmtree(self.tmp, ignore_errors=True)

    def console(self):
        if getattr(self, "saved_console", None) is not None:
            return self.saved_console
        try:
            with open(self.log_path, errors="replace") as f:
                return f.read()
        except OSError:
            return ""

    # -- driving ----------------------------------------------------------------------------
    def wait_for(self, pattern, timeout=None):
        """Waits for a regex on the console; returns the match."""
        self.child.expect(pattern, timeout=timeout or self.timeout)
        return self.child.match

    def wait_exit(self, timeout=None):
        """Waits for QEMU to exit (poweroff, or reboot with -no-reboot); returns its status."""
        self.child.expect(pexpect.EOF, timeout=timeout or self.timeout)
        self.child.close()
        return self.child.exitstatus

    def shell(self, timeout=None):
        """Waits for the console shell and turns off echo, so output is only output."""
        # The prompt may already have gone by (console output after it, or consumed by an
        # earlier wait_for): ask for a fresh one.
        self.child.sendline("")
        self.wait_for(r"# ", timeout)
        self.child.sendline("stty -echo; PS1=''")
        self.run("true")

    def send(self, line):
        self.child.sendline(line)

    def run(self, command, timeout=30):
        """Runs a shell command on the console; returns (exit code, output)."""
        marker = uuid.uuid4().hex[:12]
        # The marker is split in the echoed command line, so only the real end line matches.
        self.child.sendline(f"{command}; echo END-{marker[:6]}''{marker[6:]}-$?")
        self.child.expect(rf"END-{marker}-(\d+)", timeout=timeout)
        out = self.child.before
        # Drop the echoed command line.
        lines = out.replace("\r", "").split("\n")
        lines = [l for l in lines if f"END-{marker[:6]}" not in l]
        out = "\n".join(l for l in lines if not re.fullmatch(r"\s*(\x1b\[6n)?", l)).strip()
        out = re.sub(r"\x1b\[[0-9;?]*[a-zA-Z]", "", out)
        return int(self.child.match.group(1)), out


class VMTestCase(unittest.TestCase):
    """A test that boots the real image. boot() starts a VM that is stopped and removed after
    the test; a failing test prints the console of every VM it booted."""

    def boot(self, append="keel.autologin", state="fresh", **kw):
        vm = VM(append=append, state=state, **kw)
        self.addCleanup(vm.cleanup)
        vm.start()
        self.addCleanup(vm.stop)
        self.vms = getattr(self, "vms", []) + [vm]
        return vm

    def run(self, result=None):
        result = super().run(result)
        if result and (result.failures or result.errors):
            for vm in getattr(self, "vms", []):
                sys.stderr.write(f"\n---- console of {vm.tmp} ----\n{vm.console()}\n---- end ----\n")
        return result
