"""The user instance of keeld as a normal process on this host: workloads from a directory
image, driven with `keel run|ps|logs|exec|stop|kill|rm` through KEEL_USER_SOCKET. (The
nesting in a user namespace, cgroup limits and the shipped image are tested in QEMU.)"""
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import keeltest  # noqa: E402

KEEL = os.environ["KEEL_BIN"]
SRC = os.environ["KEEL_SOURCE_DIR"]


class UserRuntimeTest(unittest.TestCase):
    def setUp(self):
        self.tmp = tempfile.mkdtemp(prefix="keel-user-")
        self.state = os.path.join(self.tmp, "state")
        keeltest.build_rootfs(os.path.join(self.state, "images", "busybox", "rootfs"))
        self.sock = os.path.join(self.tmp, "user.sock")
        keeld = os.path.join(self.tmp, "keeld")
        os.symlink(KEEL, keeld)
        self.log = open(os.path.join(self.tmp, "keeld.log"), "w")
        self.daemon = subprocess.Popen([keeld, "--instance=user", "--state", self.state, "--socket", self.sock,
                                        "--seccomp", os.path.join(SRC, "config/seccomp/default.yml")],
                                       stdout=self.log, stderr=subprocess.STDOUT)
        for _ in range(200):
            if os.path.exists(self.sock):
                break
            subprocess.run(["sleep", "0.02"])

    def tearDown(self):
        self.daemon.send_signal(signal.SIGTERM)
        try:
            self.daemon.wait(20)
        except subprocess.TimeoutExpired:
            self.daemon.kill()
            self.daemon.wait()
        self.log.close()
        subprocess.run(["sh", "-c", "for d in /sys/fs/cgroup/unified/workloads/*; do rmdir $d 2>/dev/null; done"])
        subprocess.run(["sh", "-c", f"grep -o ' {self.tmp}[^ ]*' /proc/mounts | xargs -r -n1 umount -l"])
        shutil.rmtree(self.tmp, ignore_errors=True)

    def keel(self, *args, timeout=30):
        env = dict(os.environ, KEEL_USER_SOCKET=self.sock)
        return subprocess.run([KEEL, *args], capture_output=True, text=True, env=env, timeout=timeout)

    def test_run_ps_logs_exec_stop_rm(self):
        r = self.keel("run", "--rm", "busybox", "echo", "hi")
        self.assertEqual((r.returncode, r.stdout), (0, "hi\n"), r.stderr)
        r = self.keel("run", "--rm", "busybox", "sh", "-c", "echo to-stderr >&2; exit 7")
        self.assertEqual((r.returncode, r.stdout), (7, "to-stderr\n"))
        r = self.keel("run", "-d", "--name", "web", "-e", "GREETING=hello", "busybox",
                      "sh", "-c", "echo $GREETING; exec sleep 1000")
        self.assertEqual((r.returncode, r.stdout), (0, "web\n"), r.stderr)
        r = self.keel("ps")
        self.assertRegex(r.stdout, r"web\s+busybox\s+running\s+\d+")
        self.assertEqual(self.keel("logs", "web").stdout, "hello\n")
        r = self.keel("exec", "web", "ps", "-o", "pid,comm")
        self.assertEqual(r.stdout.split(), ["PID", "COMMAND", "1", "sleep", "2", "ps"], r.stderr)
        self.assertEqual(self.keel("exec", "web", "sh", "-c", "exit 3").returncode, 3)
        # A second workload is a different container: its own PID namespace and hostname.
        r = self.keel("run", "--rm", "busybox", "sh", "-c", "hostname; ps -o pid,comm | wc -l")
        self.assertNotIn("web", r.stdout)
        r = self.keel("run", "-d", "--name", "web", "busybox", "true")
        self.assertEqual(r.returncode, 125)
        self.assertIn("a workload named 'web' already exists", r.stderr)
        self.assertEqual(self.keel("rm", "web").returncode, 1)  # running: stop it first, or -f
        self.assertEqual(self.keel("stop", "web").stdout, "web\n")
        r = self.keel("ps", "-a")
        self.assertRegex(r.stdout, r"web\s+busybox\s+exited")
        self.assertEqual(self.keel("rm", "web").returncode, 0)
        self.assertNotIn("web", self.keel("ps", "-a").stdout)
        self.assertFalse(os.path.exists(os.path.join(self.state, "containers", "web")))

    def test_errors(self):
        r = self.keel("run", "--rm", "nosuch", "true")
        self.assertEqual(r.returncode, 125)
        self.assertIn("no image 'nosuch'", r.stderr)
        r = self.keel("run", "--rm", "--memroy", "1M", "busybox", "true")
        self.assertEqual(r.returncode, 2)
        self.assertIn("unknown option --memroy (did you mean --memory?)", r.stderr)
        r = self.keel("run", "--rm", "busybox", "/nonexistent")
        self.assertEqual(r.returncode, 125)
        self.assertIn("exec: /nonexistent", r.stderr)
        r = self.keel("exec", "nosuch", "true")
        self.assertIn("no workload 'nosuch'", r.stderr)


if __name__ == "__main__":
    unittest.main(verbosity=2)
