"""QEMU: a normal boot reaches "system ready", the default services run each in its own
container, and the `keel service` CLI works from the console as a user would use it."""
import os
import re
import sys
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from vm import VMTestCase, disk_cat, disk_mkdir, disk_write  # noqa: E402

DEFAULT_SERVICES = ["console", "network", "ntp", "syslog"]


class ServicesTest(VMTestCase):
    def services(self, vm):
        code, out = vm.run("keel service list")
        self.assertEqual(code, 0, out)
        rows = {}
        for line in out.splitlines():
            m = re.match(r"(yes|no)\s+(\S+)\s+(\S+)\s+(\S+)\s+(\S+)\s+(\d+)", line)
            if m:
                rows[m.group(2)] = {"enabled": m.group(1), "state": m.group(3), "pid": m.group(4)}
        return rows

    def test_services_config_and_persistence(self):
        # Boot 1: the default services, each in its own container, and the CLI.
        vm = self.boot()
        vm.wait_for(r"keel: system ready in (\d+) ms")
        vm.shell()
        rows = self.services(vm)
        for name in DEFAULT_SERVICES:
            self.assertIn(name, rows)
            self.assertEqual(rows[name]["state"], "running", f"{name}: {rows[name]}")
        # The console shell is itself in a container: its own PID namespace shows only its own
        # few processes, none of the host's (keel-init is not its PID 1).
        code, out = vm.run("cat /proc/1/cmdline | tr '\\0' ' '")
        self.assertIn("keel-console", out)
        code, out = vm.run("ls /proc | grep -c '^[0-9]'")
        self.assertLess(int(out), 10)
        self.assertEqual(vm.run("hostname")[1], "console")
        # Each service runs in namespaces of its own, as the kernel reports them (keeld reads
        # /proc/PID/ns/* of each container): a PID namespace each, distinct from the host's and
        # from each other's; the host network only where the file opts in.
        pid_ns = {}
        for name in DEFAULT_SERVICES:
            code, out = vm.run(f"keel service status {name}")
            self.assertEqual(code, 0, out)
            self.assertIn(f"{name}: running (enabled)", out)
            ns = re.search(r"namespaces:\s+(.*)", out).group(1).split()
            pid = [n for n in ns if n.startswith("pid")]
            self.assertEqual(len(pid), 1, out)
            self.assertRegex(pid[0], r"^pid:\[\d+\]$", f"{name} shares the host PID namespace")
            pid_ns[name] = pid[0]
            for t in ["mnt", "uts", "ipc", "cgroup"]:
                self.assertNotIn(f"{t}:host", ns, name)
            self.assertEqual("net:host" in ns, name in ("network", "ntp"), f"{name}: {ns}")
        self.assertEqual(len(set(pid_ns.values())), len(DEFAULT_SERVICES), pid_ns)
        code, out = vm.run("keel service status network")
        self.assertIn("capabilities:  CAP_NET_ADMIN CAP_NET_RAW CAP_NET_BIND_SERVICE", out)
        self.assertIn("host ns:       net", out)
        code, out = vm.run("keel service status syslog")
        self.assertIn("capabilities:  none", out)
        self.assertIn("host ns:       none", out)
        self.assertIn("resources:     memory 16M, pids 8", out)
        # The network service got a DHCP lease from QEMU's user network.
        code, out = vm.run("keel service logs network", timeout=30)
        self.assertIn("bound 10.0.2.15/24", out)

        self.assertEqual(vm.run("keel service stop ntp"), (0, "ntp: stopped"))
        self.assertEqual(self.services(vm)["ntp"]["state"], "stopped")
        self.assertEqual(vm.run("keel service start ntp"), (0, "ntp: running"))
        old = self.services(vm)["syslog"]["pid"]
        self.assertEqual(vm.run("keel service restart syslog"), (0, "syslog: running"))
        self.assertNotEqual(self.services(vm)["syslog"]["pid"], old)
        code, out = vm.run("keel service status nto")
        self.assertEqual(code, 1)
        self.assertIn("did you mean 'ntp'", out)
        # Not the last few lines: without a network ntpd says "bad address" every few seconds.
        self.assertIn("[keeld] started", vm.run("keel service logs ntp --lines 1000")[1])

        # Configuration and enable/disable go to the state disk and survive a reboot.
        self.assertEqual(vm.run("keel config set hostname persisted-host"),
                         (0, "hostname = persisted-host (takes effect at the next boot)"))
        code, out = vm.run("keel config set hostnme x")
        self.assertEqual(code, 1)
        self.assertIn("did you mean 'hostname'", out)
        self.assertEqual(vm.run("keel service disable ntp"), (0, "ntp: disabled"))
        vm.send("keel os reboot")
        vm.wait_for(r"shutdown: rebooting")
        vm.wait_exit()

        # Boot 2: both settings held.
        again = self.boot(state=vm.disk)
        again.wait_for(r"network: hostname persisted-host")
        again.wait_for(r"keel: system ready in")
        again.shell()
        self.assertEqual(again.run("keel config get hostname"), (0, "persisted-host"))
        rows = self.services(again)
        self.assertEqual(rows["ntp"]["enabled"], "no")
        self.assertEqual(rows["ntp"]["state"], "disabled")
        self.assertEqual(rows["console"]["state"], "running")
        again.send("keel os poweroff")
        again.wait_for(r"reboot: Power down")
        self.assertEqual(again.wait_exit(), 0)

        # Boot 3: a broken overlay and a broken service file on the state disk. The boot goes
        # on with the last good configuration; the bad service is listed with its error.
        broken = os.path.join(vm.tmp, "broken.yml")
        with open(broken, "w") as f:
            f.write("hostname: other\nservices:\n  ntp: {enabled: yes\n")
        disk_write(vm.disk, broken, "/config.yml")
        # The user's own services live on the state partition, next to the image's.
        disk_mkdir(vm.disk, "/services")
        for name, body in [("hello", "image: console\ncommand: [/bin/sh, -c, 'echo hello from the state disk; exec sleep 100000']\n"
                                     "enabled: true\n"),
                           ("bad", "image: console\ncommand: [/bin/true]\nenabled: true\ncapabilities: [CAP_NET_ADMN]\n")]:
            local = os.path.join(vm.tmp, name + ".yml")
            with open(local, "w") as f:
                f.write(body)
            disk_write(vm.disk, local, f"/services/{name}.yml")
        third = self.boot(state=vm.disk)
        third.wait_for(r"config: ERROR /var/lib/keel/config.yml:\d+:\d+: ")
        third.wait_for(r"config: booting with the last good configuration")
        third.wait_for(r"keel: system ready in")
        third.shell()
        self.assertEqual(third.run("keel config get hostname"), (0, "persisted-host"))
        rows = self.services(third)
        self.assertEqual(rows["ntp"]["state"], "disabled")
        self.assertEqual(rows["hello"]["state"], "running")
        self.assertIn("hello from the state disk", third.run("keel service logs hello")[1])
        # One bad file: that service is invalid, with file, line, column and the fix; the rest run.
        code, out = third.run("keel service list")
        self.assertRegex(out, r"no\s+bad\s+invalid")
        self.assertIn("/var/lib/keel/services/bad.yml:4:16: capabilities[0]: unknown capability CAP_NET_ADMN"
                      " (did you mean CAP_NET_ADMIN?)", out)
        for name in ["console", "network", "syslog"]:
            self.assertEqual(rows[name]["state"], "running", name)
        code, out = third.run("keel config validate")
        self.assertEqual(code, 1)
        self.assertRegex(out, r"/var/lib/keel/config.yml:\d+:\d+: ")
        third.send("keel os poweroff")
        self.assertEqual(third.wait_exit(), 0)
        # The broken file is kept for the user to fix.
        self.assertIn("{enabled: yes", disk_cat(vm.disk, "/config.yml"))


if __name__ == "__main__":
    unittest.main(verbosity=2)
