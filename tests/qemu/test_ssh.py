"""QEMU: the sshd service. It refuses to start without an authorized key and says why; with
one it lets `keel` in by key only (a command, a terminal, the keel CLI through keeld's
socket), never root and never by password; its host keys survive a reboot."""
import os
import re
import subprocess
import sys
import tempfile
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from vm import VMTestCase, free_port  # noqa: E402


class SshTest(VMTestCase):
    def setUp(self):
        self.keys = tempfile.mkdtemp(prefix="keel-ssh-")
        self.key = os.path.join(self.keys, "id_ed25519")
        subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "test@keel", "-f", self.key], check=True)
        self.other = os.path.join(self.keys, "other")
        subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", self.other], check=True)
        with open(self.key + ".pub") as f:
            self.pub = f.read().strip()
        self.port = free_port()

    def tearDown(self):
        subprocess.run(["rm", "-rf", self.keys])

    def boot(self, state="fresh"):
        return super().boot(state=state, ssh_port=self.port)

    def ssh(self, *command, user="keel", key=None, options=()):
        """ssh from this host through the forwarded port; returns (exit code, stdout + stderr)."""
        cmd = ["ssh", "-p", str(self.port), "-i", key or self.key, "-o", "IdentitiesOnly=yes",
               "-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null", "-o", "LogLevel=ERROR",
               "-o", "BatchMode=yes", "-o", "ConnectTimeout=20", *options, f"{user}@127.0.0.1", *command]
        r = subprocess.run(cmd, capture_output=True, text=True, timeout=60)
        return r.returncode, r.stdout + r.stderr

    def host_key(self):
        r = subprocess.run(["ssh-keyscan", "-p", str(self.port), "-t", "ed25519", "127.0.0.1"],
                           capture_output=True, text=True, timeout=30)
        m = re.search(r"ssh-ed25519 (\S+)", r.stdout)
        self.assertIsNotNone(m, r.stdout + r.stderr)
        return m.group(1)

    def wait_state(self, vm, name, want, seconds=20):
        deadline = time.monotonic() + seconds
        while True:
            code, out = vm.run(f"keel service status {name}")
            state = re.search(rf"^{name}: (\S+)", out, re.M)
            if state and state.group(1) == want or time.monotonic() > deadline:
                return out
            time.sleep(0.5)

    def test_sshd(self):
        vm = self.boot()
        vm.wait_for(r"keel: system ready in")
        vm.shell()
        # Off by default.
        self.assertRegex(vm.run("keel service list")[1], r"no\s+sshd\s+disabled")

        # No authorized key: it refuses, says why, and keeld gives up after its restart limit
        # rather than retrying forever.
        code, out = vm.run("keel service start sshd", timeout=60)
        self.assertEqual(code, 1, out)
        # (keeld's warnings on the kernel console may come in between)
        self.assertEqual(out.splitlines()[-1], "sshd: failed (exited with 78 (3 failures in a row); keel service logs sshd)")
        status = self.wait_state(vm, "sshd", "failed")
        self.assertIn("sshd: failed", status)
        self.assertIn("exited with 78 (3 failures in a row)", status)
        self.assertIn("no authorized keys (ssh.authorized_keys is empty)", status)
        code, out = vm.run("keel service logs sshd")
        self.assertIn("keel-sshd: not starting: no authorized keys", out)
        self.assertIn("keel config set ssh.authorized_keys", out)
        self.assertEqual(out.count("[keeld] started"), 3, out)
        time.sleep(1)
        self.assertIn("sshd: failed", vm.run("keel service status sshd")[1])
        self.assertNotEqual(self.ssh("true")[0], 0)

        # Only Ed25519 keys: this sshd has no OpenSSL. Another type is refused by name.
        code, out = vm.run("keel config set ssh.authorized_keys "
                           "'ecdsa-sha2-nistp256 AAAAE2VjZHNhLXNoYTItbmlzdHAyNTYAAAAIbmlzdHAyNTY= me@x'")
        self.assertEqual(code, 1, out)
        self.assertIn("is a ecdsa-sha2-nistp256 key: Keel's sshd takes Ed25519 keys only", out)

        # A key, and the service enabled: it runs, and reports what it uses.
        code, out = vm.run(f"keel config set ssh.authorized_keys '{self.pub}'")
        self.assertEqual(code, 0, out)
        self.assertIn("takes effect when the sshd service restarts", out)
        self.assertEqual(vm.run("keel service enable sshd"), (0, "sshd: running"))
        code, out = vm.run("keel service status sshd")
        self.assertIn("sshd: running (enabled)", out)
        self.assertIn("capabilities:  CAP_NET_BIND_SERVICE CAP_SETUID CAP_SETGID CAP_SYS_CHROOT CAP_CHOWN "
                      "CAP_KILL\n", out)
        self.assertIn("host ns:       net", out)
        self.assertNotIn("user:[", out)  # no user namespace: keeld sees the session's real ids
        code, out = vm.run("keel service logs sshd")
        self.assertRegex(out, r"authorized key: 256 SHA256:\S+ test@keel \(ED25519\)")
        self.assertRegex(out, r"host key: 256 SHA256:\S+ .*\(ED25519\)")
        self.assertNotIn("ECDSA", out)  # built without OpenSSL: Ed25519 only
        self.assertIn("Server listening on 0.0.0.0 port 22", out)

        # keel, by key: the keel CLI works through keeld's socket (group keel).
        code, out = self.ssh("id; keel service list")
        self.assertEqual(code, 0, out)
        self.assertIn("uid=1000(keel) gid=1000(keel)", out)
        for name in ["console", "network", "sshd", "syslog"]:
            self.assertRegex(out, rf"yes\s+{name}\s+running", out)
        # A terminal (the pty is handed to keel, group tty; the login is audited).
        code, out = self.ssh("tty", options=("-tt",))
        self.assertEqual(code, 0, out)
        self.assertRegex(out, r"/dev/pts/\d+")
        # scp (SFTP underneath since OpenSSH 9.0: the sftp-server in the image).
        copy = os.path.join(self.keys, "os-release")
        r = subprocess.run(["scp", "-P", str(self.port), "-i", self.key, "-o", "IdentitiesOnly=yes",
                            "-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null",
                            "-o", "LogLevel=ERROR", "-o", "BatchMode=yes",
                            "keel@127.0.0.1:/etc/os-release", copy], capture_output=True, text=True, timeout=60)
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
        with open(copy) as f:
            self.assertIn("Keel", f.read())
        # Still no root here: the host keys are root's, the root is read-only.
        code, out = self.ssh("cat /var/lib/keel/sshd/ssh_host_ed25519_key")
        self.assertNotEqual(code, 0)
        self.assertIn("Permission denied", out)
        self.assertNotEqual(self.ssh("touch /usr/bin/x")[0], 0)

        # Refused: passwords, root (even with the authorized key), an unknown key.
        code, out = self.ssh("true", options=("-o", "PreferredAuthentications=password,keyboard-interactive",
                                              "-o", "PubkeyAuthentication=no"))
        self.assertEqual(code, 255)
        self.assertIn("Permission denied (publickey)", out)
        code, out = self.ssh("true", user="root")
        self.assertEqual(code, 255)
        self.assertIn("Permission denied (publickey)", out)
        code, out = self.ssh("true", key=self.other)
        self.assertEqual(code, 255)
        self.assertIn("Permission denied (publickey)", out)
        code, out = vm.run("keel service logs sshd")
        self.assertIn("User root from 10.0.2.2 not allowed because not listed in AllowUsers", out)

        host_key = self.host_key()
        vm.send("keel os reboot")
        vm.wait_for(r"shutdown: rebooting")
        vm.wait_exit()

        # Boot 2: enabled at boot, the same host key (on the state partition).
        again = self.boot(state=vm.disk)
        again.wait_for(r"keel: system ready in")
        code, out = self.ssh("keel service status sshd")
        self.assertEqual(code, 0, out)
        self.assertIn("sshd: running (enabled)", out)
        self.assertEqual(self.host_key(), host_key)
        # (The session ends with the services, so ssh may see the connection drop.)
        self.ssh("keel os poweroff")
        self.assertEqual(again.wait_exit(), 0)


if __name__ == "__main__":
    unittest.main(verbosity=2)
