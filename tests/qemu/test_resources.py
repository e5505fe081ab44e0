"""QEMU: the host stays in charge whatever workloads do. With a fork bomb, a `yes` flood, a
memory hog and a workload filling the state partition (65,000 empty files, then a large
file) running at once, the system keeld answers `keel service list`, `keel config set`
still writes /var/lib/keel/config.yml, the filling workload hits its bound (EDQUOT), and
the system is healthy once they are removed. A state disk made without project quotas
boots, unbounded, and says so on the console and in `keel audit`."""
import json
import os
import re
import subprocess
import sys
import tempfile
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from vm import VMTestCase  # noqa: E402

# Runs a command on the guest and prints how long it took there (/proc/uptime: 10 ms steps).
TIMED = "read a _ < /proc/uptime; {cmd}; rc=$?; read b _ < /proc/uptime; echo took=$(( (${{b%.*}}${{b#*.}} - ${{a%.*}}${{a#*.}}) * 10 ))ms; (exit $rc)"


class ResourcesTest(VMTestCase):

    def timed(self, cmd, timeout=60):
        code, out = self.vm.run(TIMED.format(cmd=cmd), timeout=timeout)
        m = re.search(r"took=(\d+)ms", out)
        self.assertIsNotNone(m, out)
        return code, out[:m.start()].strip(), int(m.group(1))

    def test_workloads_cannot_starve_the_system(self):
        vm = self.vm = self.boot()
        vm.wait_for(r"/var/lib/keel/user bounded by a project quota")
        vm.wait_for(r"keel: system ready in")
        vm.shell()
        # Start the user runtime's image store (busybox imported) before the attacks.
        self.assertEqual(vm.run("keel run --rm busybox echo ready", timeout=60), (0, "ready"))

        # `true`, not `:`: a failed redirection of a special builtin ends the shell.
        files = ("i=0; while [ $i -lt 65000 ]; do true > /f$i || break; i=$((i+1)); done; echo files=$i; "
                 # Then blocks, into a file that exists (no inode is left for a new one).
                 "dd if=/dev/zero of=/f0 bs=1M count=100 2>&1 | head -1; echo filled; exec sleep 100000")
        self.assertEqual(vm.run(f"keel run -d --name files busybox sh -c '{files}'", timeout=60), (0, "files"))
        # The filling workload runs into its bound: the project quota, not the partition's end.
        deadline = time.monotonic() + 150
        logs = ""
        while "filled" not in logs and time.monotonic() < deadline:
            time.sleep(5)
            code, logs = vm.run("keel logs files", timeout=60)
        self.assertIn("filled", logs)
        self.assertIn("Disk quota exceeded", logs)
        created = int(re.search(r"files=(\d+)", logs).group(1))
        self.assertLess(created, 65000)
        # The user runtime is at its bound (its inodes: the files workload took them).
        code, out = vm.run("keel audit --json", timeout=60)
        bound = next(c for c in json.loads(out)["checks"] if c["id"] == "1.17")
        print(f"\naudit 1.17 at the bound: {bound['detail']}", file=sys.stderr)
        self.assertEqual(bound["level"], "PASS", bound)
        used, limit = map(int, re.search(r"(\d+) of (\d+) inodes", bound["detail"]).groups())
        self.assertGreaterEqual(used, limit - 16, bound)
        # Back under the bound by a little, so that the user runtime can start the others.
        self.assertEqual(vm.run("keel exec files sh -c 'true > /f0; rm -f /f1?? /f2??'", timeout=60)[0], 0)

        starts = {
            "hog": "sh -c 'while :; do tail /dev/zero; done'",
            # Its own pids limit leaves the user runtime (pids 2048 for all) room to start the
            # flood after it; the CPU it burns retrying fork is the attack.
            "bomb": "--pids 1500 busybox sh -c 'b() { b | b & }; b; exec sleep 100000'",
            "flood": "yes",
        }
        for name, cmd in starts.items():
            image_cmd = cmd if cmd.startswith("--") else "busybox " + cmd
            code, out = vm.run(f"keel run -d --name {name} {image_cmd}", timeout=90)
            self.assertEqual((code, out), (0, name))

        # The four at once (files holding its bound), and the system answers.
        latencies = []
        for _ in range(3):
            code, out, ms = self.timed("keel service list")
            self.assertEqual(code, 0, out)
            self.assertRegex(out, r"user-runtime\s+running")
            latencies.append(ms)
        print(f"\nkeel service list under attack: {latencies} ms (files created before EDQUOT: {created})",
              file=sys.stderr)
        code, out, ms = self.timed("keel config set hostname under-attack")
        self.assertEqual(code, 0, out)
        print(f"keel config set under attack: {ms} ms", file=sys.stderr)
        self.assertEqual(vm.run("keel config get hostname"), (0, "under-attack"))
        # Removed, and everything is as before.
        code, out = vm.run("keel rm -f flood bomb hog files", timeout=180)
        self.assertEqual(code, 0, out)
        self.assertEqual(vm.run("keel run --rm busybox echo after", timeout=60), (0, "after"))
        code, out = vm.run("keel service list")
        for svc in ("console", "network", "syslog", "user-runtime"):
            self.assertRegex(out, rf"{svc}\s+running")
        self.assertEqual(vm.run("keel config set hostname after-attack")[0], 0)
        self.assertEqual(vm.run("keel config get hostname"), (0, "after-attack"))

    def test_state_disk_without_project_quotas_boots_unbounded(self):
        tmp = tempfile.mkdtemp(prefix="keel-noquota-")
        self.addCleanup(subprocess.run, ["rm", "-rf", tmp])
        disk = os.path.join(tmp, "state.img")
        subprocess.run(["truncate", "-s", "64M", disk], check=True)
        subprocess.run(["mkfs.ext4", "-q", "-F", "-L", "KEEL_STATE", disk], check=True)
        vm = self.vm = self.boot(state=disk)
        vm.wait_for(r"WARNING: /var/lib/keel/user is NOT bounded: [^\r\n]*mkfs.ext4 -O quota,project")
        vm.wait_for(r"keel: system ready in")
        vm.shell()
        code, out = vm.run("keel audit --json", timeout=60)  # exits 1: there is a warning
        bound = next(c for c in json.loads(out)["checks"] if c["id"] == "1.17")
        self.assertEqual(bound["level"], "WARN", bound)
        self.assertIn("tune2fs", bound["fix"])
        self.assertEqual(vm.run("keel run --rm busybox echo still-works", timeout=60), (0, "still-works"))


if __name__ == "__main__":
    unittest.main()
