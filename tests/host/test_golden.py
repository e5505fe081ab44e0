"""Golden-output tests of the CLI (in the manner of dinit's igr-tests): keeld runs as a normal
process over tests/golden/services/, and each case in tests/golden/cases.txt runs `keel ARGS`
and compares stdout, stderr and the exit code with tests/golden/NAME.{out,err,rc}.

Only what varies between runs is normalised before comparing: process ids (<PID>), uptimes
(<UPTIME>), namespace inode numbers (<NS>) and the temporary directory (<DIR>). KEEL_GOLDEN_UPDATE=1 rewrites the expected
files; read the diff before committing it."""
import difflib
import json
import os
import re
import shlex
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
GOLDEN = os.path.join(SRC, "tests/golden")
UPDATE = os.environ.get("KEEL_GOLDEN_UPDATE") == "1"


def normalise(text, tmp):
    text = text.replace(tmp, "<DIR>")
    text = re.sub(r"(pid:\s+)\d+", r"\1<PID>", text)
    text = re.sub(r"(pid )\d+", r"\1<PID>", text)
    text = re.sub(r"(up )\S+", r"\1<UPTIME>", text)
    text = re.sub(r"([a-z]+):\[\d+\]", r"\1:[<NS>]", text)  # namespace inodes
    # list rows: ENABLED NAME STATE PID UPTIME RESTARTS
    text = re.sub(r"^(\S+\s+\S+\s+running\s+)\d+(\s+)\S+", lambda m: f"{m.group(1)}<PID> <UPTIME>", text, flags=re.M)
    return text


class GoldenTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.tmp = tempfile.mkdtemp(prefix="keel-golden-")
        images = os.path.join(cls.tmp, "images")
        keeltest.build_rootfs(os.path.join(images, "busybox"))
        cls.services = os.path.join(cls.tmp, "services")
        shutil.copytree(os.path.join(GOLDEN, "services"), cls.services)
        state = os.path.join(cls.tmp, "state")
        os.makedirs(state)
        cls.sock = os.path.join(cls.tmp, "system.sock")
        keeld = os.path.join(cls.tmp, "keeld")
        os.symlink(KEEL, keeld)
        cls.log = open(os.path.join(cls.tmp, "keeld.log"), "w")
        cls.daemon = subprocess.Popen([keeld, "--instance=system", "--services", cls.services, "--state", state,
                                       "--socket", cls.sock, "--images", images,
                                       "--seccomp", os.path.join(SRC, "config/seccomp/default.yml")],
                                      stdout=cls.log, stderr=subprocess.STDOUT)
        # Settled: web running with both lines logged, crash finished.
        end = time.monotonic() + 15
        while time.monotonic() < end:
            r = cls.keel("service", "list", "--json")
            if r.returncode == 0:
                s = {x["name"]: x for x in json.loads(r.stdout)}
                logs = cls.keel("service", "logs", "web").stdout
                if s["web"]["state"] == "running" and "line two" in logs and s["crash"]["state"] == "failed":
                    return
            time.sleep(0.05)
        raise AssertionError("services did not settle: " + cls.keel("service", "list").stdout)

    @classmethod
    def tearDownClass(cls):
        cls.daemon.send_signal(signal.SIGTERM)
        cls.daemon.wait(20)
        cls.log.close()
        subprocess.run(["sh", "-c", "for d in /sys/fs/cgroup/unified/keel/system/*; do rmdir $d 2>/dev/null; done"])
        shutil.rmtree(cls.tmp, ignore_errors=True)

    @classmethod
    def keel(cls, *args):
        env = dict(os.environ, KEEL_SYSTEM_SOCKET=cls.sock)
        return subprocess.run([KEEL, *args], capture_output=True, text=True, env=env, timeout=30)

    def test_cases(self):
        with open(os.path.join(GOLDEN, "cases.txt")) as f:
            cases = [tuple(p.strip() for p in l.split("|", 1)) for l in f if l.strip() and not l.startswith("#")]
        failures = []
        for name, args in cases:
            r = self.keel(*shlex.split(args))
            got = {"out": normalise(r.stdout, self.tmp), "err": normalise(r.stderr, self.tmp), "rc": f"{r.returncode}\n"}
            for ext, text in got.items():
                path = os.path.join(GOLDEN, f"{name}.{ext}")
                if UPDATE:
                    with open(path, "w") as f:
                        f.write(text)
                    continue
                with open(path) as f:
                    want = f.read()
                if text != want:
                    diff = "".join(difflib.unified_diff(want.splitlines(True), text.splitlines(True),
                                                        f"{name}.{ext} (expected)", f"keel {args}"))
                    failures.append(diff)
        self.assertFalse(failures, "\n".join(failures))


if __name__ == "__main__":
    unittest.main(verbosity=2)
