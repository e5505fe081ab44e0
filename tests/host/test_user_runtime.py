"""The user instance of keeld as a normal process on this host: busybox imported as an OCI
archive (scripts/make-busybox-oci) with `keel image import`, workloads driven with
`keel run|ps|logs|exec|stop|kill|rm` through KEEL_USER_SOCKET. (The nesting in a user
namespace, cgroup limits and the image shipped and imported on first boot are tested in QEMU.)"""
import json
import os
import resource
import shutil
import socket
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


class UserRuntimeTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.images = tempfile.mkdtemp(prefix="keel-oci-")
        cls.busybox = os.path.join(cls.images, "busybox.tar")
        subprocess.run([os.path.join(SRC, "scripts/make-busybox-oci"), cls.busybox], check=True)

    @classmethod
    def tearDownClass(cls):
        shutil.rmtree(cls.images, ignore_errors=True)

    def setUp(self):
        self.tmp = tempfile.mkdtemp(prefix="keel-user-")
        self.state = os.path.join(self.tmp, "state")
        self.sock = os.path.join(self.tmp, "user.sock")
        keeld = os.path.join(self.tmp, "keeld")
        os.symlink(KEEL, keeld)
        self.log = open(os.path.join(self.tmp, "keeld.log"), "w")
        # A bound on keeld's heap: a regression that reads without end (an image's
        # /etc/passwd -> /dev/zero) fails the test instead of the shared machine.
        bound = lambda: resource.setrlimit(resource.RLIMIT_DATA, (1 << 30, 1 << 30))  # noqa: E731
        self.daemon = subprocess.Popen([keeld, "--instance=user", "--state", self.state, "--socket", self.sock,
                                        "--seccomp", os.path.join(SRC, "config/seccomp/default.yml")],
                                       stdout=self.log, stderr=subprocess.STDOUT, preexec_fn=bound)
        # Up to 30 s (a loaded CI machine), and a keeld that exits says why.
        deadline = time.monotonic() + 30
        while not os.path.exists(self.sock) and self.daemon.poll() is None and time.monotonic() < deadline:
            time.sleep(0.02)
        r = self.keel("image", "import", self.busybox)
        self.assertEqual(r.returncode, 0, r.stderr + self.keeld_log())
        self.assertRegex(r.stdout, r"^imported busybox:latest \(sha256:[0-9a-f]{12}, 1 layer\)\n$")

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

    def keeld_log(self):
        self.log.flush()
        with open(os.path.join(self.tmp, "keeld.log"), errors="replace") as f:
            return f"\nkeeld (exit {self.daemon.poll()}):\n{f.read()[-3000:]}"

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

    def store_files(self):
        root = os.path.join(self.state, "images")
        return sorted(os.path.relpath(os.path.join(d, f), root) for d, _, fs in os.walk(root)
                      for f in fs + [x for x in _ if os.path.islink(os.path.join(d, x))]
                      if not os.path.relpath(d, root).startswith("layers/"))

    def test_image_import_list_rm(self):
        r = self.keel("image", "list")
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertRegex(r.stdout, r"NAME +ID +SIZE +LAYERS +CREATED\nbusybox:latest +[0-9a-f]{12} +[0-9.]+MB +1 ")
        listed = self.keel("image", "list", "--json")
        [img] = __import__("json").loads(listed.stdout)
        self.assertEqual((img["names"], img["cmd"]), (["busybox:latest"], ["sh"]))
        before = self.store_files()

        # A truncated archive and one whose layer does not match its digest are refused with
        # the reason, and the store is as it was.
        with open(self.busybox, "rb") as f:
            data = f.read()
        bad = os.path.join(self.tmp, "truncated.tar")
        with open(bad, "wb") as f:
            f.write(data[: len(data) // 2])
        r = self.keel("image", "import", bad)
        self.assertEqual(r.returncode, 1)
        self.assertIn("truncated.tar", r.stderr)
        self.assertIn("truncated", r.stderr.split("truncated.tar", 1)[1])
        corrupt = bytearray(data)
        at = len(corrupt) // 2
        corrupt[at:at + 64] = bytes(b ^ 0xFF for b in corrupt[at:at + 64])
        bad = os.path.join(self.tmp, "corrupt.tar")
        with open(bad, "wb") as f:
            f.write(bytes(corrupt))
        r = self.keel("image", "import", bad)
        self.assertEqual(r.returncode, 1)
        self.assertIn("corrupt.tar", r.stderr)
        self.assertEqual(self.store_files(), before)
        self.assertEqual(self.keel("image", "list", "--json").stdout, listed.stdout)
        r = self.keel("image", "import", os.path.join(self.tmp, "missing.tar"))
        self.assertEqual(r.returncode, 1)
        self.assertIn("missing.tar: ENOENT (No such file or directory)", r.stderr)

        # A file only this CLI can open (mode 0600, another owner than keeld would need): the
        # descriptor travels, not the path.
        private = os.path.join(self.tmp, "private.tar")
        shutil.copy(self.busybox, private)
        os.chmod(private, 0o600)
        self.assertEqual(self.keel("image", "import", private).returncode, 0)

        # In use: refused; after the workload is gone: removed, layers and all.
        self.assertEqual(self.keel("run", "-d", "--name", "user1", "busybox", "sleep", "100").returncode, 0)
        r = self.keel("image", "rm", "busybox")
        self.assertEqual(r.returncode, 1)
        self.assertIn("image busybox is used by workload user1 (keel rm user1 first)", r.stderr)
        self.assertEqual(self.keel("rm", "-f", "user1").returncode, 0)
        r = self.keel("image", "rm", "busybox")
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertRegex(r.stdout, r"^removed busybox:latest \(sha256:[0-9a-f]{12}\)\n$")
        self.assertEqual(os.listdir(os.path.join(self.state, "images", "layers")), [])
        self.assertIn("no image 'busybox'", self.keel("run", "--rm", "busybox", "true").stderr)

    def big_image(self, name, size):
        """An OCI archive with one gzip layer holding `size` bytes of zeros: slow to unpack."""
        import gzip
        import hashlib
        import io
        import json
        import tarfile
        sha = lambda b: "sha256:" + hashlib.sha256(b).hexdigest()  # noqa: E731
        raw = io.BytesIO()
        with tarfile.open(fileobj=raw, mode="w") as tf:
            t = tarfile.TarInfo("big")
            t.size = size
            tf.addfile(t, io.BytesIO(bytes(size)))
        layer = raw.getvalue()
        blob = gzip.compress(layer, compresslevel=1, mtime=0)
        config = json.dumps({"architecture": "amd64", "os": "linux", "config": {"Cmd": ["sh"]},
                             "rootfs": {"type": "layers", "diff_ids": [sha(layer)]}}).encode()
        manifest = json.dumps({
            "schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": sha(config), "size": len(config)},
            "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip", "digest": sha(blob), "size": len(blob)}],
        }).encode()
        index = json.dumps({"schemaVersion": 2, "manifests": [{
            "mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": sha(manifest), "size": len(manifest),
            "annotations": {"org.opencontainers.image.ref.name": name}}]}).encode()
        path = os.path.join(self.tmp, "big.tar")
        with tarfile.open(path, "w") as tf:
            for member, data in [("oci-layout", b'{"imageLayoutVersion": "1.0.0"}'), ("index.json", index),
                                 *((f"blobs/sha256/{sha(b)[7:]}", b) for b in (config, manifest, blob))]:
                t = tarfile.TarInfo(member)
                t.size = len(data)
                tf.addfile(t, io.BytesIO(data))
        return path

    def test_import_runs_beside_other_requests(self):
        # The import runs in a child process: while a slow one unpacks, keeld answers `ps`,
        # refuses `image rm` (an import has layers no image names yet) and a second import.
        big = self.big_image("big:latest", 256 << 20)
        env = dict(os.environ, KEEL_USER_SOCKET=self.sock)
        importing = subprocess.Popen([KEEL, "image", "import", big], env=env, text=True,
                                     stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        seen = set()
        while importing.poll() is None and seen != {"rm", "import"}:
            r = self.keel("image", "rm", "no-such-image")
            if "image rm: an import is running; try again when it is done" in r.stderr:
                seen.add("rm")
            r = self.keel("image", "import", self.busybox)
            if "another import is running (one at a time" in r.stderr:
                seen.add("import")
            self.assertEqual(self.keel("ps", "-a").returncode, 0)
        out, err = importing.communicate(timeout=120)
        self.assertEqual(seen, {"rm", "import"}, "the import finished before keeld was asked anything")
        self.assertEqual(importing.returncode, 0, err)
        self.assertRegex(out, r"^imported big:latest \(sha256:[0-9a-f]{12}, 1 layer\)\n$")
        self.assertIn("big:latest", self.keel("image", "list").stdout)
        self.assertEqual(self.keel("image", "rm", "big").returncode, 0)

    def test_interactive_terminal(self):
        import pexpect
        env = dict(os.environ, KEEL_USER_SOCKET=self.sock, TERM="dumb")
        # run -it: this terminal is the workload's; keys reach it, its exit code comes back.
        child = pexpect.spawn(KEEL, ["run", "-it", "--rm", "--name", "tty1", "busybox", "sh"], env=env,
                              encoding="utf-8", timeout=20, dimensions=(40, 100))
        child.sendline("echo $((6*7)); [ -t 0 ] && [ -t 1 ] && echo on-a-tty; stty size; tty")
        child.expect("42")
        child.expect("on-a-tty")
        child.expect("40 100")  # the window size followed
        child.expect("/dev/pts/0\r\n")  # made in the workload's own devpts: its name exists there
        # Nothing writes to the workload's log pipe (its output goes to the terminal): keeld
        # must stop watching it at end of file, not spin on it.
        ticks = lambda: sum(int(x) for x in open(f"/proc/{self.daemon.pid}/stat").read().rsplit(")", 1)[1].split()[11:13])  # noqa: E731
        before = ticks()
        subprocess.run(["sleep", "1"])
        self.assertLess(ticks() - before, os.sysconf("SC_CLK_TCK") // 2, "keeld is busy while an -it workload idles")
        # ^C is a key for the workload's terminal: it interrupts the foreground job in there.
        child.sendline("sleep 100")
        subprocess.run(["sleep", "1"])  # sleep in the foreground: ^C before that would go to sh
        child.sendcontrol("c")
        child.sendline("echo still-$((1+1))")
        child.expect("still-2")
        child.sendline("exit 3")
        child.expect(pexpect.EOF)
        child.close()
        self.assertEqual(child.exitstatus, 3)
        self.assertNotIn("tty1", self.keel("ps", "-a").stdout)  # --rm
        # exec -it into a running workload: its namespaces, a terminal of its own. The
        # workload's /dev/ptmx is planted to lead to the host's devpts through a descriptor:
        # the terminal still comes from its own devpts (/dev/pts/ptmx, no links followed).
        self.assertEqual(self.keel("run", "-d", "--name", "box", "busybox", "sleep", "1000").returncode, 0)
        r = self.keel("exec", "box", "sh", "-c", "rm -f /dev/ptmx && ln -s /proc/self/fd/3/../../../../../dev/pts/ptmx /dev/ptmx")
        self.assertEqual(r.returncode, 0, r.stderr)
        child = pexpect.spawn(KEEL, ["exec", "-it", "box", "sh"], env=env, encoding="utf-8", timeout=20)
        child.sendline("ps -o pid,comm | grep -c sleep; [ -t 0 ] && echo on-a-tty; tty")
        child.expect("1\r\n")
        child.expect("on-a-tty")
        child.expect("/dev/pts/0\r\n")
        child.sendline("exit 4")
        child.expect(pexpect.EOF)
        child.close()
        self.assertEqual(child.exitstatus, 4)
        # A terminal belongs to the workload's user (as runc makes it), and a start that fails
        # before there is one says why and still honours --rm.
        child = pexpect.spawn(KEEL, ["run", "-it", "--rm", "--user", "1000", "busybox", "sh", "-c", "stat -c owner=%u $(tty)"],
                              env=env, encoding="utf-8", timeout=20)
        child.expect("owner=1000")
        child.expect(pexpect.EOF)
        child.close()
        child = pexpect.spawn(KEEL, ["run", "-it", "--rm", "--name", "nostart", "-v", "/nonexistent-dir:/x", "busybox", "true"],
                              env=env, encoding="utf-8", timeout=20)
        child.expect(pexpect.EOF)
        child.close()
        self.assertEqual(child.exitstatus, 125, child.before)
        self.assertIn("nostart", child.before)
        self.assertIn("/nonexistent-dir", child.before)
        self.assertNotIn("nostart", self.keel("ps", "-a").stdout)
        # -i without a terminal: the workload reads the CLI's own stdin (the descriptor travels).
        env = dict(os.environ, KEEL_USER_SOCKET=self.sock)
        r = subprocess.run([KEEL, "run", "-i", "--rm", "busybox", "sh", "-c", "wc -l; read x || echo eof"],
                           input="a\nb\nc\n", capture_output=True, text=True, env=env, timeout=30)
        self.assertEqual((r.returncode, r.stdout.split()), (0, ["3", "eof"]), r.stderr)
        r = subprocess.run([KEEL, "exec", "-i", "box", "sh", "-c", "read n; exit $n"], input="5\n",
                           capture_output=True, text=True, env=env, timeout=30)
        self.assertEqual(r.returncode, 5, r.stderr)
        # -t needs a terminal: refused with the reason, nothing started.
        r = self.keel("run", "-it", "busybox", "true")
        self.assertEqual((r.returncode, r.stderr),
                         (2, "keel: run -t: the input is not a terminal (-i alone passes it as it is)\n"))
        self.assertEqual(self.keel("rm", "-f", "box").returncode, 0)

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

    def raw_request(self, req):
        """One request on the control socket as it is, after the handshake: the reply."""
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as c:
            c.settimeout(30)
            c.connect(self.sock)
            f = c.makefile("rwb")
            for msg in ({"hello": "keel", "version": 1}, req):
                f.write(json.dumps(msg).encode() + b"\n")
                f.flush()
                reply = json.loads(f.readline())
            return reply

    def status_caps(self, *run_args):
        r = self.keel("run", "--rm", *run_args, "busybox", "sh", "-c", "grep ^Cap /proc/self/status; touch /etc/x 2>/dev/null && echo wrote; true")
        self.assertEqual(r.returncode, 0, r.stderr)
        caps = {k: int(v, 16) for k, v in keeltest.parse_kv(r.stdout.replace(":\t", "=")).items() if k.startswith("Cap")}
        return caps, "wrote" in r.stdout

    def test_non_root_user_has_no_capabilities(self):
        # Docker's rule: root gets the default set; a non-root user only has it as a bound
        # (what a setuid binary could gain), with nothing effective, permitted or ambient.
        root, wrote = self.status_caps()
        self.assertTrue(wrote)
        self.assertNotEqual(root["CapEff"], 0)
        self.assertEqual((root["CapPrm"], root["CapBnd"], root["CapAmb"]), (root["CapEff"], root["CapEff"], 0))
        user, wrote = self.status_caps("--user", "1000")
        self.assertFalse(wrote, "uid 1000 wrote /etc")
        self.assertEqual(user, {"CapInh": 0, "CapPrm": 0, "CapEff": 0, "CapBnd": root["CapBnd"], "CapAmb": 0})
        # --cap-add for a non-root user widens the bound only.
        user, _ = self.status_caps("--user", "1000", "--cap-add", "NET_ADMIN")
        net_admin = keeltest.cap_mask(["CAP_NET_ADMIN"])
        self.assertEqual(user, {"CapInh": 0, "CapPrm": 0, "CapEff": 0, "CapBnd": root["CapBnd"] | net_admin, "CapAmb": 0})
        root_added, _ = self.status_caps("--cap-add", "NET_ADMIN")
        self.assertEqual(root_added["CapEff"], root["CapEff"] | net_admin)

    def image_file(self, rel):
        """The busybox layer's copy of `rel` in the store (what workloads' roots are made of)."""
        for d, _, files in os.walk(os.path.join(self.state, "images", "layers")):
            path = os.path.join(d, rel)
            if os.path.lexists(path) and os.path.isdir(os.path.join(d, "bin")):
                return path
        self.fail(f"no {rel} in the image store")

    def test_image_passwd_is_untrusted(self):
        passwd, group = self.image_file("etc/passwd"), self.image_file("etc/group")
        host_passwd, host_group = os.path.join(self.tmp, "passwd"), os.path.join(self.tmp, "group")
        with open(host_passwd, "w") as f:
            f.write("app:x:4242:4242::/:/bin/sh\n")
        with open(host_group, "w") as f:
            f.write("app:x:4242:\n")

        def plant(path, how):
            os.remove(path)
            how(path)

        def refused(why):
            r = self.keel("run", "--rm", "--user", "app", "busybox", "id", "-u")
            self.assertEqual(r.returncode, 125, r.stdout + r.stderr)
            self.assertNotIn("4242", r.stdout)
            self.assertIn("/etc/passwd", r.stderr)
            self.assertIn(why, r.stderr)
            self.assertEqual(self.keel("ps", "-a").returncode, 0)

        # A link out of the image's root: resolved inside it, where it leads nowhere.
        plant(passwd, lambda p: os.symlink(host_passwd, p))
        plant(group, lambda p: os.symlink(host_group, p))
        refused("ENOENT")
        # A FIFO would block keeld for good; a device would never end; a huge file is bounded.
        plant(passwd, os.mkfifo)
        refused("not a regular file")
        plant(passwd, lambda p: os.symlink("/dev/zero", p))
        refused("ENOENT")
        self.assertEqual(self.daemon.poll(), None)
        plant(passwd, lambda p: open(p, "w").write("x:x:1:1::/:/bin/sh\n" * 120000 + "app:x:4242:4242::/:/bin/sh\n"))
        refused("larger than 1024 KiB")
        # A file inside the image that is fine still works.
        plant(passwd, lambda p: open(p, "w").write("root:x:0:0::/:/bin/sh\napp:x:4242:4242::/:/bin/sh\n"))
        plant(group, lambda p: open(p, "w").write("root:x:0:\napp:x:4242:\n"))
        r = self.keel("run", "--rm", "--user", "app", "busybox", "id", "-u")
        self.assertEqual((r.returncode, r.stdout), (0, "4242\n"), r.stderr)

    def test_exec_into_a_workload_that_stops_everything(self):
        # A workload that stops every process it sees (kill -STOP -1 in a loop) catches an
        # exec's process between joining its PID namespace and exec: keeld keeps answering and
        # the exec fails with why. The test stops it deterministically by freezing the
        # workload's cgroup, which the exec's process is born into.
        r = self.keel("run", "-d", "--name", "stopper", "busybox", "sleep", "1000")
        self.assertEqual(r.returncode, 0, r.stderr)
        pid = json.loads(self.keel("ps", "--json").stdout)[0]["pid"]
        cgroup = open(f"/proc/{pid}/cgroup").read().split("0::", 1)[1].split("\n")[0]
        freeze = os.path.join("/sys/fs/cgroup/unified" + cgroup, "cgroup.freeze")
        if not os.path.exists(freeze):
            self.skipTest(f"no cgroup v2 freezer for the workload ({freeze})")
        with open(freeze, "w") as f:
            f.write("1")
        try:
            env = dict(os.environ, KEEL_USER_SOCKET=self.sock)
            execing = subprocess.Popen([KEEL, "exec", "stopper", "true"], env=env, text=True,
                                       stdout=subprocess.PIPE, stderr=subprocess.PIPE)
            for _ in range(5):
                r = self.keel("ps", timeout=10)
                self.assertRegex(r.stdout, r"stopper\s+busybox\s+running")
            out, err = execing.communicate(timeout=60)
        finally:
            with open(freeze, "w") as f:
                f.write("0")
        self.assertEqual(execing.returncode, 125, out + err)
        self.assertIn("exec in stopper: the process did not start within 10 s", err)
        self.assertEqual(self.keel("exec", "stopper", "true").returncode, 0)
        self.assertEqual(self.keel("rm", "-f", "stopper", timeout=10).returncode, 0)

    def test_output_flood(self):
        # `yes` writes as fast as it can: keeld still answers, keeps what its rate allows, says
        # what it dropped, and the log file stays within its cap.
        r = self.keel("run", "-d", "--name", "flood", "busybox", "yes")
        self.assertEqual(r.returncode, 0, r.stderr)
        logs = [os.path.join(self.state, "log", "flood.log" + s) for s in ("", ".1")]
        def said():
            for p in filter(os.path.exists, logs):
                with open(p, errors="replace") as f:
                    if "dropped" in f.read():
                        return True
            return False

        for _ in range(10):
            r = self.keel("ps", timeout=10)
            self.assertRegex(r.stdout, r"flood\s+busybox\s+running")
        self.assertTrue(keeltest.wait_for(said, timeout=10), "no line says what was dropped")
        for p in logs:
            if os.path.exists(p):
                self.assertLessEqual(os.path.getsize(p), (1 << 20) + (128 << 10), p)
        self.assertEqual(self.keel("logs", "flood", timeout=10).returncode, 0)
        self.assertEqual(self.keel("rm", "-f", "flood", timeout=10).returncode, 0)

    def test_malformed_run_request_changes_nothing(self):
        req = {"cmd": "run", "name": "bad", "image": "busybox", "command": ["true"], "rm": "yes"}
        reply = self.raw_request(req)
        self.assertEqual(reply, {"ok": False, "error": "run: 'rm' must be true or false, got \"yes\""})
        reply = self.raw_request(dict(req, rm=False, volume=["/:/host"]))
        self.assertEqual(reply, {"ok": False, "error": "run: unknown field 'volume'"})
        reply = self.raw_request(dict(req, rm=False, memory=-1))
        self.assertIn("'memory' must be a non-negative integer", reply["error"])
        self.assertFalse(os.path.exists(os.path.join(self.state, "containers", "bad")))
        self.assertEqual(keeltest.mounts_mentioning(self.state), [])
        self.assertNotIn("bad", self.keel("ps", "-a").stdout)

    def test_volume_source_through_a_planted_link(self):
        # A workload plants links in a volume it shares; a later workload names a path through
        # them: neither the control socket's directory nor a directory made through the link.
        shared = os.path.join(self.state, "volumes", "shared")
        os.makedirs(shared)
        r = self.keel("run", "--rm", "-v", f"{shared}:/data", "busybox", "sh", "-c",
                      f"ln -s {self.tmp} /data/sock && ln -s {self.tmp}/made /data/made")
        self.assertEqual(r.returncode, 0, r.stderr)
        for source in (f"{shared}/sock", f"{shared}/made/sub"):
            r = self.keel("run", "--rm", "-v", f"{source}:/x", "busybox", "ls", "/x")
            self.assertEqual(r.returncode, 125, r.stdout + r.stderr)
            self.assertNotIn("user.sock", r.stdout)
            self.assertIn(f"mount source {source}: goes through a symbolic link", r.stderr)
        self.assertFalse(os.path.exists(os.path.join(self.tmp, "made")))
        # A missing source in keeld's state directory is made, and mounted.
        r = self.keel("run", "--rm", "-v", f"{shared}/new/dir:/x", "busybox", "sh", "-c", "echo hi > /x/f")
        self.assertEqual(r.returncode, 0, r.stderr)
        with open(os.path.join(shared, "new", "dir", "f")) as f:
            self.assertEqual(f.read(), "hi\n")


if __name__ == "__main__":
    unittest.main(verbosity=2)
