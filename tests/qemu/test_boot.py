"""QEMU: the real image boots with keel-init as PID 1, hardens the kernel, keeps state, and
shuts down cleanly. Drives the console of the recovery shell (keel.recovery) until keeld and
its console service exist."""
import os
import re
import subprocess
import sys
import unittest
from pathlib import Path

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from vm import ROOT, VMTestCase, disk_cat  # noqa: E402

sys.path.insert(0, os.path.join(ROOT, "scripts"))
from imagelib.modules import read_allow_list  # noqa: E402  (build-image's own reader)

STAGES = ["mounts", "cmdline", "modules", "sysctl", "network", "state", "config", "recovery"]


def sysctl_profile():
    """key -> value from config/sysctl.yml (flat `  key: value  # comment` lines)."""
    out = {}
    with open(os.path.join(ROOT, "config/sysctl.yml")) as f:
        for line in f:
            m = re.match(r"^\s+([a-z0-9_.]+):\s*([^#\s]+)", line)
            if m:
                out[m.group(1)] = m.group(2)
    return out


class BootTest(VMTestCase):
    def boot(self, append="keel.recovery", state="fresh"):
        return super().boot(append=append, state=state)


    def test_boot_harden_persist_poweroff(self):
        vm = self.boot()
        vm.shell()
        console = vm.console()
        # Every stage, in order, each with its time.
        positions = []
        for stage in STAGES:
            m = re.search(rf"keel: \[\s*(\d+) ms\] {stage}: ", console)
            self.assertIsNotNone(m, f"stage {stage} not printed")
            positions.append(m.start())
        self.assertEqual(positions, sorted(positions))
        self.assertRegex(console, r"modules: loaded \d+: .*virtio_blk.*ext4")
        self.assertIn("modules: locked (kernel.modules_disabled=1)", console)

        self.assertEqual(vm.run("cat /proc/sys/kernel/modules_disabled"), (0, "1"))
        # Locked means locked: even root cannot load a module now.
        code, out = vm.run("insmod /lib/modules/$(uname -r)/kernel/fs/overlayfs/overlay.ko* 2>&1; echo rc=$?")
        self.assertIn("Operation not permitted", out)
        self.assertIn("rc=1", out)

        # Kernel lockdown from the command line (lockdown=integrity), and the modules loaded are
        # exactly those the image ships: the allow-list and its dependencies.
        self.assertEqual(vm.run("cat /sys/kernel/security/lockdown"), (0, "none [integrity] confidentiality"))
        loaded = vm.run("cut -d' ' -f1 /proc/modules | sort")[1].split()
        shipped = vm.run("find /lib/modules -name '*.ko*' | sed 's|.*/||; s|[.]ko.*||; s|-|_|g' | sort")[1].split()
        self.assertEqual(loaded, shipped)
        allow = read_allow_list(Path(ROOT) / "config/modules.yml")
        self.assertGreater(len(allow), 5)
        self.assertLessEqual(set(allow), set(loaded))

        profile = sysctl_profile()
        self.assertGreater(len(profile), 20)
        script = "; ".join(f"echo {k}=$(cat /proc/sys/{k.replace('.', '/')})" for k in profile)
        code, out = vm.run(script, timeout=60)
        seen = dict(l.split("=", 1) for l in out.splitlines() if "=" in l)
        for key, want in profile.items():
            self.assertEqual(seen.get(key), want, f"sysctl {key}")

        # The keel binary is bound read-only on itself (CVE-2019-5736): not even root writes it,
        # so the runtime runs it as it is, without a memfd copy (tests/host/test_oci_cli.py).
        self.assertRegex(vm.run("grep ' /usr/bin/keel ' /proc/mounts")[1], r"^\S+ /usr/bin/keel \S+ ro,")
        code, out = vm.run("touch /usr/bin/keel")  # (a write would be ETXTBSY: PID 1 runs it)
        self.assertNotEqual(code, 0)
        self.assertIn("Read-only file system", out)

        self.assertEqual(vm.run("grep -c ' /var/lib/keel ext4 ' /proc/mounts")[1], "1")
        self.assertEqual(vm.run("echo kept-across-poweroff > /var/lib/keel/marker")[0], 0)
        vm.send("poweroff")
        vm.wait_for(r"shutdown: unmounted /var/lib/keel")
        vm.wait_for(r"reboot: Power down")
        self.assertEqual(vm.wait_exit(), 0)
        # Clean unmount: fsck finds nothing to replay, and the file is on the disk.
        fsck = subprocess.run(["e2fsck", "-n", vm.disk], capture_output=True, text=True)
        self.assertEqual(fsck.returncode, 0, fsck.stdout + fsck.stderr)
        self.assertEqual(disk_cat(vm.disk, "/marker").strip(), "kept-across-poweroff")

    def test_reboot_and_state_persists(self):
        first = self.boot()
        first.shell()
        first.run("echo first-boot > /var/lib/keel/persist")
        first.send("reboot")
        first.wait_for(r"shutdown: rebooting")
        # -no-reboot: QEMU exits where the machine would restart.
        first.wait_exit()
        second = self.boot(state=first.disk)
        second.shell()
        self.assertEqual(second.run("cat /var/lib/keel/persist"), (0, "first-boot"))
        second.send("poweroff")
        second.wait_exit()

    def test_no_state_disk(self):
        vm = self.boot(state="none")
        vm.wait_for(r"state: .*STATE WILL NOT PERSIST")
        vm.shell()
        self.assertEqual(vm.run("grep -c '^state /var/lib/keel tmpfs' /proc/mounts")[1], "1")
        vm.send("poweroff")
        vm.wait_exit()

    def test_no_state_disk_runs_everything(self):
        # On the tmpfs, the user runtime (root only in its user namespace) runs too.
        vm = self.boot(append="keel.autologin", state="none")
        vm.wait_for(r"state: .*STATE WILL NOT PERSIST")
        vm.wait_for(r"keel: system ready in")
        vm.shell()
        code, out = vm.run("keel service start user-runtime && keel run --rm busybox echo on-tmpfs", timeout=60)
        self.assertEqual((code, out.splitlines()[-1:]), (0, ["on-tmpfs"]), out)
        self.assertNotRegex(vm.run("keel service list")[1], r"(failed|restarting)")
        vm.send("keel os poweroff")
        self.assertEqual(vm.wait_exit(), 0)


if __name__ == "__main__":
    unittest.main(verbosity=2)
