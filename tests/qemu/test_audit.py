"""QEMU: `keel audit` on the real image. The default image audits with zero warnings in the
host and system-service sections; a workload with an added capability and no limits warns
about exactly those things, and the warnings say what to change."""
import json
import os
import re
import sys
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from vm import VMTestCase  # noqa: E402


class AuditTest(VMTestCase):

    def audit_json(self):
        code, out = self.vm.run("keel audit --json", timeout=60)
        data = json.loads(out)
        return code, data

    def test_audit(self):
        vm = self.vm = self.boot()
        vm.wait_for(r"keel: system ready in")
        vm.shell()

        # The default image: one screen, no warnings anywhere, every section there.
        code, screen = vm.run("keel audit", timeout=60)
        self.assertEqual(code, 0, screen)
        self.assertNotIn("[WARN]", screen)
        for section in ("Host configuration", "System services", "Workloads"):
            self.assertIn(section, screen)
        self.assertLess(len(screen.splitlines()), 50)
        m = re.search(r"^Checks: (\d+)  Score: (-?\d+)  \((\d+) pass, 0 warn, (\d+) info\)$", screen, re.M)
        self.assertIsNotNone(m, screen)
        self.assertEqual(int(m.group(2)), int(m.group(3)))

        code, data = self.audit_json()
        self.assertEqual(code, 0)
        checks = data["checks"]
        self.assertEqual(data["summary"]["checks"], len(checks))
        by_id = {c["id"]: c for c in checks if c["section"] == "host"}
        # What the issue names: lockdown, the module lock, the allow-list, the mounts.
        self.assertIn("[integrity]", by_id["1.7"]["detail"])
        self.assertEqual(by_id["1.4"]["level"], "PASS")
        self.assertEqual(by_id["1.5"]["level"], "PASS")
        self.assertEqual(by_id["1.6"]["level"], "PASS")
        self.assertRegex(by_id["1.6"]["detail"], r"^[1-9]\d* loaded$")
        for mount_check in ("1.8", "1.9", "1.10", "1.11"):
            self.assertEqual(by_id[mount_check]["level"], "PASS", by_id[mount_check])
        # The user runtime's share of the state partition: a project quota, blocks and inodes.
        self.assertEqual(by_id["1.17"]["level"], "PASS", by_id["1.17"])
        self.assertRegex(by_id["1.17"]["detail"], r"of \d+ MiB, \d+ of \d+ inodes")
        self.assertGreater(len([c for c in checks if c["id"].startswith("1.1.")]), 20)
        system = {c.get("target") for c in checks if c["section"] == "system"}
        self.assertLessEqual({"console", "network", "ntp", "syslog", "user-runtime"}, system)
        infos = [c for c in checks if c["level"] == "INFO"]
        for c in infos:
            self.assertTrue(c.get("detail"), c)  # an INFO always says why

        # A workload with an added capability and no limits: exactly those warnings.
        self.assertEqual(vm.run("keel run -d --name risky --cap-add SYS_ADMIN busybox sleep 100000"), (0, "risky"))
        self.assertEqual(vm.run("keel run -d --name tidy --memory 32M --pids 32 busybox sleep 100000"), (0, "tidy"))
        code, data = self.audit_json()
        self.assertEqual(code, 1)
        warns = sorted((c["section"], c.get("target"), c["id"]) for c in data["checks"] if c["level"] == "WARN")
        self.assertEqual(warns, [("workloads", "risky", "5.11"), ("workloads", "risky", "5.12"),
                                 ("workloads", "risky", "5.2")])
        fixes = {c["id"]: c["fix"] for c in data["checks"] if c["level"] == "WARN"}
        self.assertEqual(fixes["5.2"], "run it without --cap-add SYS_ADMIN")
        self.assertEqual(fixes["5.11"], "keel run --memory SIZE")
        code, screen = vm.run("keel audit", timeout=60)
        self.assertEqual(code, 1)
        self.assertIn("[WARN] 5.2 risky: no capabilities beyond Docker's default set — also CAP_SYS_ADMIN", screen)
        self.assertIn("[PASS] 5 tidy: 13 of 15 checks", screen)

        vm.send("keel os poweroff")
        self.assertEqual(vm.wait_exit(), 0)


if __name__ == "__main__":
    unittest.main(verbosity=2)
