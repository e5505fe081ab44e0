"""keeld as a normal process over a test service directory: real containers from a busybox
image, driven with the `keel service` CLI through KEEL_SYSTEM_SOCKET."""
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import keeltest  # noqa: E402

KEEL = os.environ["KEEL_BIN"]
SRC = os.environ["KEEL_SOURCE_DIR"]


def wait_for(pred, timeout=10.0, what="condition"):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        v = pred()
        if v:
            return v
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


class KeeldTest(unittest.TestCase):
    def setUp(self):
        self.tmp = tempfile.mkdtemp(prefix="keel-keeld-")
        self.images = os.path.join(self.tmp, "images")
        self.services = os.path.join(self.tmp, "services")
        self.state = os.path.join(self.tmp, "state")
        for d in (self.images, self.services, self.state):
            os.makedirs(d)
        keeltest.build_rootfs(os.path.join(self.images, "busybox"))
        self.sock = os.path.join(self.tmp, "system.sock")
        self.daemon = None

    def tearDown(self):
        if self.daemon and self.daemon.poll() is None:
            self.daemon.send_signal(signal.SIGTERM)
            try:
                self.daemon.wait(20)
            except subprocess.TimeoutExpired:
                self.daemon.kill()
                self.daemon.wait()
        if self.daemon:
            self.daemon_log.close()
        subprocess.run(["sh", "-c", f"for d in /sys/fs/cgroup/unified/keel/system/kt-*; do rmdir $d 2>/dev/null; done"])
        shutil.rmtree(self.tmp, ignore_errors=True)

    def service(self, name, body):
        with open(os.path.join(self.services, name + ".yml"), "w") as f:
            f.write(body)

    def start_daemon(self):
        keeld = os.path.join(self.tmp, "keeld")
        os.symlink(KEEL, keeld)
        self.daemon_log = open(os.path.join(self.tmp, "keeld.log"), "w")
        self.daemon = subprocess.Popen([keeld, "--instance=system", "--services", self.services, "--state", self.state,
                                        "--socket", self.sock, "--images", self.images,
                                        "--seccomp", os.path.join(SRC, "config/seccomp/default.yml")],
                                       stdout=self.daemon_log, stderr=subprocess.STDOUT)
        wait_for(lambda: os.path.exists(self.sock), what="control socket")

    def keel(self, *args):
        env = dict(os.environ, KEEL_SYSTEM_SOCKET=self.sock)
        return subprocess.run([KEEL, *args], capture_output=True, text=True, env=env, timeout=30)

    def services_json(self):
        r = self.keel("service", "list", "--json")
        self.assertEqual(r.returncode, 0, r.stderr)
        return {s["name"]: s for s in json.loads(r.stdout)}

    def log(self):
        with open(os.path.join(self.tmp, "keeld.log")) as f:
            return f.read()

    def test_list_start_stop_logs(self):
        self.service("kt-web", "image: busybox\ncommand: [/bin/sh, -c, 'echo hello from web; exec sleep 1000']\nenabled: true\n")
        self.service("kt-off", "image: busybox\ncommand: [/bin/sleep, '1000']\n")
        self.start_daemon()
        s = wait_for(lambda: self.services_json()["kt-web"]["state"] == "running" and self.services_json(), what="web running")
        self.assertTrue(s["kt-web"]["enabled"])
        self.assertGreater(s["kt-web"]["pid"], 0)
        self.assertEqual(s["kt-off"]["state"], "disabled")
        r = self.keel("service", "list")
        self.assertRegex(r.stdout, r"ENABLED\s+NAME\s+STATE\s+PID\s+UPTIME\s+RESTARTS")
        self.assertRegex(r.stdout, r"yes\s+kt-web\s+running\s+\d+")
        r = self.keel("service", "list", "--ros")
        self.assertIn("enabled   kt-web", r.stdout)
        self.assertIn("disabled  kt-off", r.stdout)
        wait_for(lambda: "hello from web" in self.keel("service", "logs", "kt-web").stdout, what="log line")
        # The container is real: its own PID namespace, no capabilities.
        pid = s["kt-web"]["pid"]
        self.assertNotEqual(os.readlink(f"/proc/{pid}/ns/pid"), os.readlink("/proc/self/ns/pid"))
        with open(f"/proc/{pid}/status") as f:
            status = f.read()
        self.assertIn("CapEff:\t0000000000000000", status)
        self.assertIn("NoNewPrivs:\t1", status)
        self.assertIn("Seccomp:\t2", status)

        r = self.keel("service", "stop", "kt-web")
        self.assertEqual(r.returncode, 0, r.stderr)
        wait_for(lambda: self.services_json()["kt-web"]["state"] == "stopped", what="web stopped")
        self.assertFalse(os.path.exists(f"/proc/{pid}"))
        r = self.keel("service", "start", "kt-web")
        self.assertEqual(r.returncode, 0, r.stderr)
        wait_for(lambda: self.services_json()["kt-web"]["state"] == "running", what="web running again")

        r = self.keel("service", "status", "kt-wbe")
        self.assertEqual(r.returncode, 1)
        self.assertIn("unknown service 'kt-wbe' (did you mean 'kt-web'?)", r.stderr)

    def test_enable_disable_persist(self):
        self.service("kt-a", "image: busybox\ncommand: [/bin/sleep, '1000']\n")
        self.start_daemon()
        r = self.keel("service", "enable", "kt-a")
        self.assertEqual(r.returncode, 0, r.stderr)
        wait_for(lambda: self.services_json()["kt-a"]["state"] == "running", what="a running")
        with open(os.path.join(self.state, "config.yml")) as f:
            self.assertIn("kt-a", f.read())
        r = self.keel("service", "disable", "kt-a")
        self.assertEqual(r.returncode, 0, r.stderr)
        wait_for(lambda: self.services_json()["kt-a"]["state"] == "disabled", what="a disabled")

    def test_crash_loop_backoff_then_failed(self):
        self.service("kt-crash", "image: busybox\ncommand: [/bin/sh, -c, 'echo crashing; exit 3']\nenabled: true\n"
                                 "restart: always\nrestart_limit: 3\n")
        self.start_daemon()
        s = wait_for(lambda: (lambda j: j["kt-crash"]["state"] == "failed" and j)(self.services_json()),
                     timeout=15, what="crash marked failed")
        self.assertEqual(s["kt-crash"]["restarts"], 3)
        self.assertIn("exited with 3", s["kt-crash"]["error"])
        logs = self.keel("service", "logs", "kt-crash").stdout
        self.assertIn("restarting in 100 ms", logs)
        self.assertIn("restarting in 200 ms", logs)
        self.assertIn("restarting in 400 ms", logs)

    def test_dependency_order_and_exec_failure(self):
        self.service("kt-late", "image: busybox\ncommand: [/bin/sleep, '1000']\nenabled: true\nrequires: [kt-early]\n")
        self.service("kt-early", "image: busybox\ncommand: [/bin/sleep, '1000']\nenabled: true\n")
        self.service("kt-bad", "image: busybox\ncommand: [/nonexistent]\nenabled: true\nrestart_limit: 0\n")
        self.service("kt-noimage", "image: nosuch\ncommand: [/bin/true]\nenabled: true\n")
        self.start_daemon()
        s = wait_for(lambda: (lambda j: j["kt-late"]["state"] == "running" and j)(self.services_json()), what="late running")
        self.assertEqual(s["kt-early"]["state"], "running")
        # Both in keeld's start order: early's container was created first.
        self.assertLess(s["kt-early"]["pid"], s["kt-late"]["pid"])
        bad = wait_for(lambda: (lambda j: j["kt-bad"]["state"] == "failed" and j["kt-bad"])(self.services_json()), what="bad failed")
        self.assertIn("exec: /nonexistent", bad["error"])
        self.assertIn("ENOENT", bad["error"])
        noimage = self.services_json()["kt-noimage"]
        self.assertEqual(noimage["state"], "invalid")
        self.assertIn("kt-noimage.yml: image: 'nosuch' not found at " + self.images + "/nosuch", noimage["error"])

    def test_readiness_restart(self):
        flag = os.path.join(self.tmp, "flag")
        os.makedirs(flag)
        ready = os.path.join(flag, "ready")
        self.service("kt-slow", "image: busybox\ncommand: [/bin/sh, -c, 'sleep 1; touch /flag/ready; exec sleep 1000']\n"
                                f"enabled: true\nready: {{path: {ready}}}\n"
                                f"mounts: [{{type: bind, source: {flag}, destination: /flag, read_only: false}}]\n")
        self.service("kt-next", "image: busybox\ncommand: [/bin/sleep, '1000']\nenabled: true\nrequires: [kt-slow]\n")
        self.service("kt-notify", "image: busybox\ncommand: [/bin/sh, -c, 'sleep 0.5; echo READY >&3; exec sleep 1000']\n"
                                  "enabled: true\nready: notify\n")
        self.start_daemon()
        # Until the path appears, kt-slow is starting and what requires it waits.
        s = wait_for(lambda: (lambda j: j["kt-slow"]["state"] == "starting" and j)(self.services_json()), what="slow starting")
        self.assertEqual(s["kt-next"]["state"], "waiting")
        s = wait_for(lambda: (lambda j: j["kt-next"]["state"] == "running" and j)(self.services_json()), what="next running")
        self.assertEqual(s["kt-slow"]["state"], "running")
        self.assertTrue(os.path.exists(ready))
        s = wait_for(lambda: (lambda j: j["kt-notify"]["state"] == "running" and j)(self.services_json()), what="notify ready")
        self.assertIn("ready in", self.log())
        # restart: stopped and started again, and the CLI waits for it to be running.
        old = s["kt-notify"]["pid"]
        r = self.keel("service", "restart", "kt-notify")
        self.assertEqual((r.returncode, r.stdout), (0, "kt-notify: running\n"), r.stderr)
        new = self.services_json()["kt-notify"]["pid"]
        self.assertNotEqual(old, new)
        self.assertFalse(os.path.exists(f"/proc/{old}"))
        r = self.keel("service", "stop", "kt-notify")
        self.assertEqual((r.returncode, r.stdout), (0, "kt-notify: stopped\n"), r.stderr)

    def test_only_granted_capabilities(self):
        # Changing the hostname of its own UTS namespace needs CAP_SYS_ADMIN there.
        body = "image: busybox\ncommand: [/bin/sh, -c, 'hostname changed && echo granted || echo refused; exec sleep 1000']\nenabled: true\n"
        self.service("kt-nocap", body)
        self.service("kt-cap", body + "capabilities: [CAP_SYS_ADMIN]\n")
        self.start_daemon()
        wait_for(lambda: "refused" in self.keel("service", "logs", "kt-nocap").stdout, what="nocap refused")
        wait_for(lambda: "granted" in self.keel("service", "logs", "kt-cap").stdout, what="cap granted")
        self.assertNotIn("granted", self.keel("service", "logs", "kt-nocap").stdout)
        r = self.keel("service", "status", "kt-cap")
        self.assertIn("capabilities:  CAP_SYS_ADMIN", r.stdout)

    def test_config(self):
        self.service("kt-env", "image: busybox\ncommand: [/bin/sh, -c, 'echo \"address=$ADDR dns=$DNS\"; exec sleep 1000']\n"
                               "enabled: true\nenvironment: ['ADDR=${network.address}', 'DNS=${network.dns}']\n")
        self.start_daemon()
        self.assertEqual(self.keel("config", "get", "hostname").stdout, "keel\n")
        r = self.keel("config", "set", "hostname", "edge-1")
        self.assertEqual((r.returncode, r.stdout), (0, "hostname = edge-1 (takes effect at the next boot)\n"), r.stderr)
        self.assertEqual(self.keel("config", "get", "hostname").stdout, "edge-1\n")
        # Validated before anything is written, with a suggestion for a typo.
        r = self.keel("config", "set", "hostnme", "x")
        self.assertEqual(r.returncode, 1)
        self.assertIn("unknown key 'hostnme' (did you mean 'hostname'?)", r.stderr)
        r = self.keel("config", "set", "network.address", "10.0.0.300/24")
        self.assertEqual(r.returncode, 1)
        self.assertIn("is not an IPv4 address with a prefix length", r.stderr)
        self.assertEqual(self.keel("config", "set", "network.address", "10.0.0.5/24").returncode, 0)
        self.assertEqual(self.keel("config", "set", "network.dns", "[10.0.0.1, 10.0.0.2]").returncode, 0)
        overlay = os.path.join(self.state, "config.yml")
        with open(overlay) as f:
            text = f.read()
        self.assertIn("hostname: edge-1", text)
        self.assertEqual(oct(os.stat(overlay).st_mode & 0o777), "0o600")
        # The service's environment takes the values in use when it starts.
        self.assertEqual(self.keel("service", "restart", "kt-env").returncode, 0)
        wait_for(lambda: "address=10.0.0.5/24 dns=10.0.0.1 10.0.0.2" in self.keel("service", "logs", "kt-env").stdout,
                 what="configured environment")
        # export: the whole configuration in use, which validates.
        r = self.keel("config", "export")
        self.assertIn("hostname: edge-1", r.stdout)
        exported = os.path.join(self.tmp, "exported.yml")
        with open(exported, "w") as f:
            f.write(r.stdout)
        r = self.keel("config", "validate", exported)
        self.assertEqual((r.returncode, r.stdout), (0, f"{exported}: valid\n"), r.stderr)
        # A broken overlay is reported with file, line and column, is not rewritten, and the
        # last good configuration stays in use.
        with open(overlay, "w") as f:
            f.write("hostname: edge-1\nnetwork:\n  adress: 10.0.0.9/24\n")
        r = self.keel("config", "validate")
        self.assertEqual(r.returncode, 1)
        self.assertIn(f"{overlay}:3:3: network.adress: unknown key (did you mean 'address'?)", r.stderr)
        r = self.keel("config", "set", "hostname", "other")
        self.assertEqual(r.returncode, 1)
        self.assertIn("fix or remove it first", r.stderr)
        with open(overlay) as f:
            self.assertIn("adress", f.read())

    def test_handshake_errors_are_replies(self):
        # A wrongly typed field in the handshake gets the handshake error as a reply before the
        # connection closes (it used to be an exception that closed it without a word).
        import socket
        self.start_daemon()
        cases = [({"hello": "keel", "version": "1"}, "handshake first"),
                 ({"hello": "keel"}, "client too old: protocol 0 < 1"),
                 ("[1]", "malformed message: not a JSON object")]
        for msg, expected in cases:
            with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
                s.settimeout(10)
                s.connect(self.sock)
                s.sendall(((msg if isinstance(msg, str) else json.dumps(msg)) + "\n").encode())
                data = b""
                while not data.endswith(b"\n"):
                    chunk = s.recv(4096)
                    self.assertTrue(chunk, f"{msg}: connection closed without a reply")
                    data += chunk
                reply = json.loads(data)
                self.assertFalse(reply["ok"])
                self.assertIn(expected, reply["error"])
                self.assertEqual(s.recv(4096), b"", "the connection is closed after the error")


if __name__ == "__main__":
    unittest.main(verbosity=2)
