"""QEMU: the user runtime on the real image. Workloads run nested in the user-runtime
service's user namespace: `keel run` and friends work from the console, a workload is
separated from system space, its limits hold, and the two runtimes restart independently."""
import os
import re
import sys
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from vm import VMTestCase  # noqa: E402


class WorkloadsTest(VMTestCase):

    def ps(self, all_=True):
        code, out = self.vm.run("keel ps" + (" -a" if all_ else ""))
        self.assertEqual(code, 0, out)
        rows = {}
        for line in out.splitlines()[1:]:
            f = line.split(None, 5)
            if len(f) >= 4:
                rows[f[0]] = {"image": f[1], "state": f[2], "pid": f[3], "status": f[5] if len(f) > 5 else ""}
        return rows

    def service_pids(self):
        code, out = self.vm.run("keel service list")
        return {m.group(1): m.group(2) for m in re.finditer(r"^yes\s+(\S+)\s+running\s+(\d+)", out, re.M)}

    def test_workloads(self):
        vm = self.vm = self.boot()
        vm.wait_for(r"keel: system ready in")
        vm.shell()
        self.assertIn("user-runtime", self.service_pids())

        # The CLI, as a user runs it.
        self.assertEqual(vm.run("keel run --rm busybox echo hi"), (0, "hi"))
        self.assertEqual(vm.run("keel run --rm busybox sh -c 'exit 7'")[0], 7)
        self.assertEqual(vm.run("keel run -d --name web busybox sh -c 'echo serving; exec sleep 100000'"), (0, "web"))
        self.assertEqual(vm.run("keel run -d --name other busybox sleep 100000"), (0, "other"))
        rows = self.ps()
        self.assertEqual(rows["web"]["state"], "running")
        self.assertEqual(rows["web"]["image"], "busybox")
        self.assertEqual(vm.run("keel logs web"), (0, "serving"))
        # exec: in the workload's namespaces, as its processes see them.
        code, out = vm.run("keel exec web ps -o pid,comm")
        self.assertEqual((code, out.split()), (0, ["PID", "COMMAND", "1", "sleep", "2", "ps"]))
        self.assertEqual(vm.run("keel exec web sh -c 'hostname; exit 5'"), (5, "web"))
        code, out = vm.run("keel run busybox true; keel ps -a")
        self.assertNotIn("--rm", out)
        # -it from the serial console: what is typed reaches the workload, its exit code comes back.
        vm.send("keel run -it --rm busybox sh -c 'read x; echo got-$x; [ -t 0 ] && echo on-a-tty; echo name-$(tty); exit 5'; echo rc=$?")
        time.sleep(2)
        vm.send("hello")
        vm.wait_for("got-hello")
        vm.wait_for("on-a-tty")
        vm.wait_for("name-/dev/pts/0")  # the workload's own devpts
        vm.wait_for("rc=5")

        # Images: busybox was imported from the OCI archive the image ships, on the first start.
        code, out = vm.run("keel image list")
        self.assertEqual(code, 0, out)
        self.assertRegex(out, r"\nbusybox:latest +[0-9a-f]{12} +[0-9.]+MB +1 ")
        self.assertIn("image busybox:latest imported from /usr/share/keel/workload-images/busybox.tar",
                      vm.run("keel service logs user-runtime")[1])
        listed = vm.run("keel image list --json")
        # Bad archives are refused by name and reason; the store is unchanged.
        vm.run("echo garbage > /tmp/garbage.tar; tar cf /tmp/etc.tar /etc 2>/dev/null; "
               "head -c 3000 /tmp/etc.tar > /tmp/short.tar")
        self.assertEqual(vm.run("keel image import /tmp/garbage.tar"), (1, "keel: /tmp/garbage.tar: not a tar archive"))
        code, out = vm.run("keel image import /tmp/short.tar")
        self.assertEqual((code, out), (1, "keel: /tmp/short.tar: truncated archive"))
        code, out = vm.run("keel image import /tmp/etc.tar")
        self.assertEqual(code, 1)
        self.assertIn("/tmp/etc.tar: ", out)
        self.assertEqual(vm.run("keel image list --json"), listed)
        code, out = vm.run("keel image rm busybox")
        self.assertEqual(code, 1)
        self.assertRegex(out, r"image busybox is used by workload \S+ \(keel rm \S+ first\)")

        # Separation: its own processes only; no system service, no system socket, no state
        # partition; its root is an unprivileged host uid.
        code, out = vm.run("keel run --rm busybox ps -o pid,comm")
        self.assertEqual(out.split(), ["PID", "COMMAND", "1", "ps"])
        code, out = vm.run("keel run --rm busybox sh -c 'ls /run/keel /var/lib/keel 2>&1; ls /proc | grep -c ^[0-9]'")
        self.assertIn("ls: /run/keel: No such file or directory", out)
        self.assertIn("ls: /var/lib/keel: No such file or directory", out)
        self.assertEqual(out.splitlines()[-1], "3")  # sh, ls and grep: nothing else
        self.assertEqual(vm.run("keel run --rm busybox cat /proc/self/uid_map")[1].split(), ["0", "100000", "65536"])
        code, out = vm.run("keel service status user-runtime")
        self.assertIn("host uids:     100000", out)  # every process in its subtree, workloads included
        self.assertNotRegex(out, r"host uids:.*\b0\b")
        # No module loading, no mounts, no sysctls, even as the workload's root.
        code, out = vm.run("keel run --rm busybox sh -c 'echo x > /tmp/m.ko; insmod /tmp/m.ko' 2>&1")
        self.assertNotEqual(code, 0)
        self.assertIn("not permitted", out)
        code, out = vm.run("keel run --rm busybox mount -t tmpfs none /mnt 2>&1")
        self.assertNotEqual(code, 0)
        code, out = vm.run("keel run --rm busybox sh -c 'echo 1 > /proc/sys/kernel/sysrq' 2>&1")
        self.assertNotEqual(code, 0)
        self.assertIn("Read-only file system", out)
        code, out = vm.run("keel run --rm --cap-add SYS_ADMIN busybox mount -t tmpfs none /mnt 2>&1; echo rc=$?")
        # Even with CAP_SYS_ADMIN it holds it in the user runtime's namespace only: the
        # workload's mount namespace is its own, so this mount is harmless, and nothing on the
        # host changed.
        self.assertIn("rc=", out)

        # Limits: a fork bomb in its pids limit; memory over its limit is OOM-killed alone.
        before = self.service_pids()
        self.assertEqual(vm.run("keel run -d --name bomb --pids 64 busybox sh -c 'f() { f | f & }; f; sleep 100000'")[0], 0)
        vm.run("sleep 3")
        code, out = vm.run("keel run --rm busybox echo still-works", timeout=60)
        self.assertEqual((code, out), (0, "still-works"))
        self.assertEqual(self.service_pids(), before)
        self.assertEqual(self.ps()["web"]["state"], "running")
        self.assertEqual(vm.run("keel rm -f bomb", timeout=60), (0, "bomb"))
        code, out = vm.run("keel run --name hog --memory 32M busybox tail /dev/zero", timeout=90)
        self.assertEqual(code, 137, out)
        self.assertIn("out of memory", out)
        rows = self.ps()
        self.assertEqual(rows["hog"]["state"], "exited")
        self.assertIn("out of memory", rows["hog"]["status"])
        self.assertEqual(rows["web"]["state"], "running")

        # stop and rm.
        self.assertEqual(vm.run("keel stop other"), (0, "other"))
        self.assertEqual(self.ps()["other"]["state"], "exited")
        self.assertEqual(vm.run("keel rm other hog"), (0, "other\nhog"))
        self.assertNotIn("other", self.ps())

        # The runtimes restart independently: a system service restarting leaves workloads
        # alone, and the user runtime restarting leaves system services alone.
        web_pid = self.ps()["web"]["pid"]
        self.assertEqual(vm.run("keel service restart syslog"), (0, "syslog: running"))
        self.assertEqual(self.ps()["web"]["pid"], web_pid)
        before = self.service_pids()
        self.assertEqual(vm.run("keel service restart user-runtime", timeout=60), (0, "user-runtime: running"))
        after = self.service_pids()
        for name in ("console", "network", "ntp", "syslog"):
            self.assertEqual(after[name], before[name], name)
        self.assertNotEqual(after["user-runtime"], before["user-runtime"])
        self.assertEqual(vm.run("keel run --rm busybox echo back"), (0, "back"))

        vm.send("keel os poweroff")
        self.assertEqual(vm.wait_exit(), 0)


if __name__ == "__main__":
    unittest.main(verbosity=2)
