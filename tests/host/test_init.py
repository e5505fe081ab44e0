"""keel-init as PID 1 of fresh namespaces, over a busybox sysroot (finit tests itself this way).

Each test boots `unshare --pid --mount --fork --uts --net chroot SYSROOT /init --test`: the real
binary is PID 1 of its own PID namespace; --test skips what needs a real kernel of its own
(modules, sysctls, the state partition, reboot(2)) and makes init exit once it has shut down.
--net gives it a loopback of its own to bring up instead of poking the host's.

/usr/bin/keeld is a shell script standing in for keeld: it writes READY to fd 3, leaves
orphans behind (background children of subshells that exit at once, so init inherits them), and
stops on SIGTERM. Whatever must happen "later" waits on a FIFO the test holds open: an orphan
or keeld blocks reading it, and the test releases them by closing its end once each reader has
it open. So no step depends on a sleep being long enough.

Not here: a keeld that ignores SIGTERM (keeld_stop_ms 10 s + term_ms 5 s, fixed in
SupervisorConfig); the unit tests cover it through the syscall seam. KEEL_SLOW_TESTS=1 runs it.
"""

import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import keeltest  # noqa: E402
from keeltest import wait_for  # noqa: E402

BOOT_STAGES = ["mounts", "cmdline", "modules", "sysctl", "network", "state", "keeld"]
STAGE_RE = re.compile(r"^keel: \[\s*(\d+) ms\] ([a-z]+): (.*)$")
READY_RE = re.compile(r"^keel: system ready in (\d+) ms$", re.M)
TEST_CMDLINE = "BOOT_IMAGE=/vmlinuz quiet keel.debug keel.frobnicate=1 TERM=linux"

# on_term: what the fake keeld does on SIGTERM.
TERM_TRAPS = {
    "exit": """trap 'echo "keeld $$: SIGTERM, stopping"; kill $SLEEPER; exit 0' TERM""",
    # Stops only once the test releases /log/stop: shutdown is in progress meanwhile.
    "slow": """trap 'echo "keeld $$: SIGTERM, stopping slowly"; read x < /log/stop; """
            """kill $SLEEPER; exit 0' TERM""",
    "ignore": "trap '' TERM",
}

FAKE_KEELD = """#!/bin/sh
# A stand-in for keeld, written by tests/host/test_init.py.
echo $$ >> /log/keeld.pids
{trap}
i=0
while [ $i -lt {orphans} ]; do
    # The subshell exits at once; its background child is an orphan init did not start.
    ( read x < /log/release & echo $! >> /log/orphans )
    i=$((i + 1))
done
{hold}
echo READY >&3
sleep 100000 &
SLEEPER=$!
while :; do wait $SLEEPER; done
"""


def fake_keeld(orphans=0, hold_ready=False, on_term="exit"):
    return FAKE_KEELD.format(trap=TERM_TRAPS[on_term], orphans=orphans,
                             hold="read x < /log/go-ready" if hold_ready else "")


def ns_of(pid):
    try:
        return os.readlink(f"/proc/{pid}/ns/pid")
    except OSError:
        return None


def proc_info(pid):
    """{"host", "ns", "ppid", "state", "name"} of a host pid, or None when it is gone."""
    try:
        with open(f"/proc/{pid}/status") as f:
            status = dict(line.rstrip("\n").split(":\t", 1) for line in f if ":\t" in line)
    except OSError:
        return None
    return {"host": int(pid), "ns": int(status["NSpid"].split()[-1]),
            "ppid": int(status["PPid"]), "state": status["State"].split()[0],
            "name": status["Name"]}


class Fifo:
    """A FIFO in the sysroot that the test holds open read-write: readers open it at once and
    block in read(2) until release() closes the last writer and they all see EOF."""

    def __init__(self, path):
        self.path = path
        os.mkfifo(path)
        self.fd = os.open(path, os.O_RDWR)

    def release(self):
        if self.fd is not None:
            os.close(self.fd)
            self.fd = None


class PidOne:
    """A running `init --test` as PID 1 of fresh namespaces; its console goes to a file."""

    def __init__(self, sysroot, log_path, cmdline=TEST_CMDLINE):
        self.sysroot = sysroot
        self.log_path = log_path
        env = dict(os.environ, KEEL_CMDLINE=cmdline)
        self.argv = ["unshare", "--pid", "--mount", "--fork", "--uts", "--net",
                     "chroot", sysroot, "/init", "--test"]
        with open(log_path, "w") as out:
            self.proc = subprocess.Popen(self.argv, stdin=subprocess.DEVNULL, stdout=out,
                                         stderr=subprocess.STDOUT, env=env)
        self.pid = wait_for(self._find_init, timeout=5)
        if not self.pid:
            self.kill()
            raise AssertionError(f"no PID 1 appeared under unshare:\n{self.output()}")
        self.ns = ns_of(self.pid)

    def _find_init(self):
        try:
            with open(f"/proc/{self.proc.pid}/task/{self.proc.pid}/children") as f:
                children = f.read().split()
        except OSError:
            return None
        if not children:
            return None
        pid = int(children[0])
        ns = ns_of(pid)
        return pid if ns and ns != ns_of("self") else None

    def output(self):
        with open(self.log_path, errors="replace") as f:
            return f.read()

    def lines(self):
        return self.output().splitlines()

    def wait_output(self, pattern, timeout=5.0, count=1):
        """Waits until `pattern` (a regex, multiline) matched `count` times; returns the last
        match."""
        rx = re.compile(pattern, re.M)

        def found():
            matches = list(rx.finditer(self.output()))
            return matches[count - 1] if len(matches) >= count else None

        m = wait_for(found, timeout=timeout)
        if not m:
            raise AssertionError(f"init never printed /{pattern}/ (x{count}) in {timeout}s; "
                                 f"console:\n{self.output()}")
        return m

    def processes(self):
        """Every process of init's PID namespace, as proc_info() dicts."""
        out = []
        for entry in os.listdir("/proc"):
            if entry.isdigit() and ns_of(entry) == self.ns:
                info = proc_info(entry)
                if info:
                    out.append(info)
        return out

    def by_ns_pid(self, ns_pid):
        for p in self.processes():
            if p["ns"] == ns_pid:
                return p
        return None

    def wait_exit(self, timeout=10):
        try:
            return self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            raise AssertionError(f"init did not exit in {timeout}s; console:\n{self.output()}")

    def kill(self):
        """SIGKILL to PID 1 takes its whole namespace with it."""
        if self.proc.poll() is None:
            if self.pid:
                try:
                    os.kill(self.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
            try:
                self.proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


class InitTest(unittest.TestCase):

    def setUp(self):
        if os.geteuid() != 0:
            self.fail("the init host tests need root (unshare --pid --mount, chroot)")
        self.tmp = tempfile.mkdtemp(prefix="keelinit-")
        self.addCleanup(shutil.rmtree, self.tmp, True)
        self.sysroot = keeltest.build_rootfs(os.path.join(self.tmp, "root"))
        shutil.copy(keeltest.keel_bin(), os.path.join(self.sysroot, "init"))
        os.makedirs(os.path.join(self.sysroot, "usr", "bin"))
        self.log = os.path.join(self.sysroot, "log")
        os.makedirs(self.log)
        self.fifos = {name: Fifo(os.path.join(self.log, name))
                      for name in ("release", "go-ready", "stop")}
        for fifo in self.fifos.values():
            self.addCleanup(fifo.release)
        self.init = None

    def boot(self, **keeld):
        path = os.path.join(self.sysroot, "usr", "bin", "keeld")
        with open(path, "w") as f:
            f.write(fake_keeld(**keeld))
        os.chmod(path, 0o755)
        self.init = PidOne(self.sysroot, os.path.join(self.tmp, "console.log"))
        self.addCleanup(self.init.kill)
        return self.init

    def read_log(self, name):
        try:
            with open(os.path.join(self.log, name)) as f:
                return [int(x) for x in f.read().split()]
        except FileNotFoundError:
            return []

    def wait_blocked_on(self, ns_pids, fifo):
        """Waits until each process has `fifo` open as its stdin (the `read x < FIFO`), so
        releasing the FIFO cannot race with a reader that has not opened it yet."""
        path = os.path.realpath(self.fifos[fifo].path)

        def blocked():
            for n in ns_pids:
                p = self.init.by_ns_pid(n)
                try:
                    if not p or os.readlink(f"/proc/{p['host']}/fd/0") != path:
                        return False
                except OSError:
                    return False
            return True

        self.assertTrue(wait_for(blocked, timeout=5),
                        f"{ns_pids} never opened {fifo}; console:\n{self.init.output()}")

    def keeld_host_pid(self, start=1):
        pids = wait_for(lambda: len(self.read_log("keeld.pids")) >= start and
                        self.read_log("keeld.pids"), timeout=5)
        self.assertTrue(pids, f"keeld start {start} never ran; console:\n{self.init.output()}")
        p = self.init.by_ns_pid(pids[start - 1])
        self.assertIsNotNone(p, f"keeld (ns pid {pids[start - 1]}) is gone")
        return p["host"]

    def shutdown_lines(self):
        return [l for l in self.init.lines() if l.startswith("keel: shutdown:") or
                l.startswith("keeld ") or l.endswith("requested")]

    # --- boot -------------------------------------------------------------------------------

    def test_boot_stages_in_order_then_ready(self):
        init = self.boot(hold_ready=True)
        keeld = self.keeld_host_pid()
        init.wait_output(r"^keel: \[\s*\d+ ms\] keeld: ")
        # keeld runs but has not said READY: not ready yet.
        self.wait_blocked_on([proc_info(keeld)["ns"]], "go-ready")
        self.assertIsNone(READY_RE.search(init.output()))
        self.fifos["go-ready"].release()
        ready = init.wait_output(READY_RE.pattern)

        lines = init.lines()
        self.assertRegex(lines[0], r"^keel: init \S+ starting \(test mode\)$")
        stages = [STAGE_RE.match(l) for l in lines if STAGE_RE.match(l)]
        self.assertEqual([m.group(2) for m in stages], BOOT_STAGES, init.output())
        times = [int(m.group(1)) for m in stages]
        self.assertEqual(times, sorted(times), "stage times go backwards")
        what = {m.group(2): m.group(3) for m in stages}
        self.assertEqual(what["mounts"], "proc sys dev run tmp cgroup2")
        self.assertEqual(what["cmdline"],
                         "state=KEEL_STATE debug=true recovery=false (ignored: keel.frobnicate=1)")
        self.assertEqual(what["modules"], "skipped (test mode)")
        self.assertEqual(what["sysctl"], "skipped (test mode)")
        self.assertEqual(what["network"], "hostname keel; lo up")
        self.assertIn("not mounted", what["state"])
        self.assertEqual(what["keeld"], "starting /usr/bin/keeld --instance=system")
        self.assertGreaterEqual(int(ready.group(1)), times[-1])
        self.assertGreater(lines.index(ready.group(0)), lines.index(stages[-1].group(0)))
        self.assertNotIn("RECOVERY", init.output())

        # What the stages did, seen from outside.
        with open(f"/proc/{init.pid}/mountinfo") as f:
            mounts = {m["mountpoint"]: m["fstype"] for m in keeltest.mountinfo_entries(f.read())}
        for point, fstype in [("/proc", "proc"), ("/sys", "sysfs"), ("/dev", "devtmpfs"),
                              ("/dev/pts", "devpts"), ("/dev/shm", "tmpfs"), ("/run", "tmpfs"),
                              ("/tmp", "tmpfs"), ("/sys/fs/cgroup", "cgroup2")]:
            self.assertEqual(mounts.get(point), fstype, f"{point} in {mounts}")
        host = subprocess.run(["nsenter", "-t", str(init.pid), "-u", "cat",
                               "/proc/sys/kernel/hostname"], capture_output=True, text=True)
        self.assertEqual(host.stdout.strip(), "keel", host.stderr)
        with open(f"/proc/{init.pid}/root/sys/class/net/lo/flags") as f:
            self.assertTrue(int(f.read(), 16) & 0x1, "lo is not up")  # IFF_UP
        self.assertEqual(len(READY_RE.findall(init.output())), 1)

    # --- reaping ------------------------------------------------------------------------------

    def test_reaps_orphans_it_did_not_start(self):
        orphans = 60
        init = self.boot(orphans=orphans)
        init.wait_output(READY_RE.pattern)
        keeld = self.keeld_host_pid()
        ns_pids = self.read_log("orphans")
        self.assertEqual(len(ns_pids), orphans)

        # Each is alive, and init is its parent although init never started it.
        for n in ns_pids:
            p = init.by_ns_pid(n)
            self.assertIsNotNone(p, f"orphan {n} is gone before it was released")
            self.assertEqual(p["ppid"], init.pid, f"orphan {p} was not reparented to init")
            self.assertNotEqual(p["state"], "Z")
        self.wait_blocked_on(ns_pids, "release")

        # All exit at once: each must be reaped, not left a zombie.
        self.fifos["release"].release()

        def leftovers():
            live = {p["ns"]: p for p in init.processes()}
            return [live[n] for n in ns_pids if n in live]

        def zombies():
            return [p for p in init.processes() if p["state"] == "Z"]

        wait_for(lambda: not leftovers(), timeout=5)
        self.assertEqual(leftovers(), [], "orphans left behind (Z = not reaped)")
        wait_for(lambda: not zombies(), timeout=2)
        self.assertEqual(zombies(), [], "zombies in init's PID namespace")

        # keeld was not mistaken for one of them.
        self.assertNotEqual(proc_info(keeld)["state"], "Z")
        self.assertEqual(self.keeld_host_pid(), keeld)
        self.assertNotIn("keel: keeld ", init.output())
        self.assertEqual(len(self.read_log("keeld.pids")), 1)

    # --- supervision --------------------------------------------------------------------------

    def test_killed_keeld_is_restarted_and_ready_again(self):
        init = self.boot(orphans=2)
        init.wait_output(READY_RE.pattern)
        first = self.keeld_host_pid()
        first_ns = proc_info(first)["ns"]

        os.kill(first, signal.SIGKILL)
        init.wait_output(r"^keel: keeld killed by SIGKILL; stopping what is left of its "
                         r"containers$")
        init.wait_output(r"^keel: restarting keeld in 100 ms$")
        restarted = init.wait_output(r"^keel: keeld restarted \(pid (\d+), start 2\)$")
        init.wait_output(r"^keel: keeld ready again$")

        second_ns = int(restarted.group(1))
        self.assertNotEqual(second_ns, first_ns)
        self.assertEqual(self.read_log("keeld.pids"), [first_ns, second_ns])
        second = self.keeld_host_pid(start=2)
        self.assertEqual(proc_info(second)["ppid"], init.pid)
        # The dead keeld was reaped, not left a zombie.
        self.assertTrue(wait_for(lambda: init.by_ns_pid(first_ns) is None, timeout=2),
                        f"killed keeld still there: {init.by_ns_pid(first_ns)}")
        self.assertEqual(len(READY_RE.findall(init.output())), 1)

        # Killed again: restarted again, after a longer delay.
        os.kill(second, signal.SIGKILL)
        init.wait_output(r"^keel: restarting keeld in 200 ms$")
        init.wait_output(r"^keel: keeld restarted \(pid \d+, start 3\)$")
        init.wait_output(r"^keel: keeld ready again$", count=2)

    # --- shutdown -----------------------------------------------------------------------------

    def test_sigterm_shuts_down_in_order(self):
        init = self.boot(orphans=5)
        init.wait_output(READY_RE.pattern)
        keeld_ns = proc_info(self.keeld_host_pid())["ns"]
        # The orphans are still blocked: only "SIGTERM to all" can end them.
        self.wait_blocked_on(self.read_log("orphans"), "release")

        os.kill(init.pid, signal.SIGTERM)
        rc = init.wait_exit(timeout=10)
        self.assertEqual(rc, 0, init.output())
        self.assertEqual(self.shutdown_lines(), [
            "keel: poweroff requested",
            "keel: shutdown: stopping keeld and its services",
            f"keeld {keeld_ns}: SIGTERM, stopping",
            "keel: shutdown: keeld stopped (exited with 0)",
            "keel: shutdown: sending SIGTERM to all processes",
            "keel: shutdown: syncing filesystems",
            # Reverse mount order; /, /proc, /sys, /dev and what is under them stay.
            "keel: shutdown: unmounted /tmp",
            "keel: shutdown: unmounted /run",
            "keel: shutdown: powering off",
        ], init.output())
        # Everyone obeyed SIGTERM: init did not need the SIGKILL round.
        self.assertNotIn("SIGKILL", init.output())
        self.assertNotIn("restart", init.output())

    def test_signal_during_shutdown_is_ignored(self):
        init = self.boot(on_term="slow")
        init.wait_output(READY_RE.pattern)
        keeld_ns = proc_info(self.keeld_host_pid())["ns"]

        os.kill(init.pid, signal.SIGINT)  # Ctrl-Alt-Del: reboot
        init.wait_output(r"^keeld \d+: SIGTERM, stopping slowly$")
        self.wait_blocked_on([keeld_ns], "stop")
        os.kill(init.pid, signal.SIGTERM)
        init.wait_output(r"^keel: already shutting down$")
        os.kill(init.pid, signal.SIGINT)
        init.wait_output(r"^keel: already shutting down$", count=2)
        self.fifos["stop"].release()

        rc = init.wait_exit(timeout=10)
        self.assertEqual(rc, 0, init.output())
        self.assertEqual(self.shutdown_lines(), [
            "keel: reboot requested",
            "keel: shutdown: stopping keeld and its services",
            f"keeld {keeld_ns}: SIGTERM, stopping slowly",
            "keel: shutdown: keeld stopped (exited with 0)",
            "keel: shutdown: sending SIGTERM to all processes",
            "keel: shutdown: syncing filesystems",
            "keel: shutdown: unmounted /tmp",
            "keel: shutdown: unmounted /run",
            "keel: shutdown: rebooting",
        ], init.output())
        self.assertEqual(len(self.read_log("keeld.pids")), 1, "keeld was restarted")

    @unittest.skipUnless(os.environ.get("KEEL_SLOW_TESTS"),
                         "takes keeld_stop_ms + term_ms (15 s); the unit tests cover it")
    def test_keeld_ignoring_sigterm_is_killed(self):
        init = self.boot(on_term="ignore")
        init.wait_output(READY_RE.pattern)
        start = time.monotonic()
        os.kill(init.pid, signal.SIGTERM)
        rc = init.wait_exit(timeout=25)
        self.assertEqual(rc, 0, init.output())
        self.assertGreaterEqual(time.monotonic() - start, 15 - 1)
        lines = self.shutdown_lines()
        self.assertEqual(lines[:6], [
            "keel: poweroff requested",
            "keel: shutdown: stopping keeld and its services",
            "keel: shutdown: keeld did not stop in time",
            "keel: shutdown: sending SIGTERM to all processes",
            "keel: shutdown: sending SIGKILL to all processes",
            "keel: shutdown: syncing filesystems",
        ], init.output())
        self.assertEqual(lines[-1], "keel: shutdown: powering off")

    # --- not PID 1 ----------------------------------------------------------------------------

    def test_refuses_to_run_as_init_unless_pid_1(self):
        path = os.path.join(self.tmp, "init")
        os.symlink(keeltest.keel_bin(), path)
        r = subprocess.run([path], capture_output=True, text=True, timeout=10,
                           stdin=subprocess.DEVNULL)
        self.assertEqual(r.returncode, 1, r)
        self.assertIn("must run as PID 1", r.stdout + r.stderr)


if __name__ == "__main__":
    unittest.main(verbosity=2)
