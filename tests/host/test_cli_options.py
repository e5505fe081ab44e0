"""The CLI's option parsing (init/cli/options.cc), through the real `keel` binary: what is an
option and what is an argument, and that an unknown option is an error naming it and the
verb (exit 2) before any daemon is asked. The sockets point nowhere, so a command that parsed
fine fails only at the connection (exit 1 or 125, "the user runtime ...")."""
import os
import subprocess
import sys
import tempfile
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import keeltest  # noqa: E402
import test_user_runtime  # noqa: E402  (its keeld fixture, not its tests)

KEEL = os.environ["KEEL_BIN"]


class CliOptionsTest(unittest.TestCase):
    def setUp(self):
        self.tmp = tempfile.mkdtemp(prefix="keel-cli-")
        self.env = dict(os.environ, KEEL_USER_SOCKET=os.path.join(self.tmp, "user.sock"),
                        KEEL_SYSTEM_SOCKET=os.path.join(self.tmp, "system.sock"))

    def tearDown(self):
        os.rmdir(self.tmp)

    def keel(self, *args):
        return subprocess.run([KEEL, *args], env=self.env, capture_output=True, text=True, timeout=30,
                              stdin=subprocess.DEVNULL)

    def assert_parsed(self, *args):
        """The options were fine: keel went on to ask the (absent) user runtime."""
        r = self.keel(*args)
        self.assertIn("the user runtime", r.stderr, f"keel {' '.join(args)}")
        self.assertNotIn("option", r.stderr)
        self.assertNotEqual(r.returncode, 2, r.stderr)

    def assert_rejected(self, message, *args):
        r = self.keel(*args)
        self.assertEqual(r.returncode, 2, r.stderr)
        self.assertEqual(r.stderr, f"keel: {message}\n")

    def test_the_command_keeps_its_options(self):
        self.assert_parsed("run", "--rm", "busybox", "ls", "-l")
        self.assert_parsed("run", "--rm", "--", "busybox", "echo", "hi")
        self.assert_parsed("run", "-d", "--name=web", "-eA=1", "busybox", "sh", "-c", "x")
        self.assert_parsed("exec", "web", "sh", "-c", "x")
        self.assert_parsed("exec", "-e", "A=1", "--", "web", "ps", "-o", "pid")
        self.assert_parsed("kill", "web", "-s", "HUP")

    def test_unknown_options_are_errors_naming_verb_and_option(self):
        self.assert_rejected("ps: unknown option --bogus", "ps", "--bogus")
        self.assert_rejected("rm: unknown option -s", "rm", "-s", "KILL", "web")
        self.assert_rejected("run: unknown option --nmae (did you mean --name?)", "run", "--nmae", "x", "busybox")
        self.assert_rejected("exec: unknown option -x", "exec", "-x", "web", "true")
        self.assert_rejected("service list: unknown option --jsn (did you mean --json?)", "service", "list", "--jsn")
        self.assert_rejected("image list: unknown option --bogus", "image", "list", "--bogus")

    def test_inline_values_are_read(self):
        # `--signal=X` used to be skipped, and the workload sent TERM instead.
        self.assert_rejected("kill: unknown signal BOGUS", "kill", "--signal=BOGUS", "web")
        self.assert_rejected("kill: unknown signal 99", "kill", "-s99", "web")
        self.assert_rejected("run: --memory 64X: expected a size like 64M", "run", "--memory=64X", "busybox")


class WorkloadOptionsTest(unittest.TestCase):
    """Against a real user-instance keeld, with test_user_runtime's fixture."""
    setUpClass = classmethod(test_user_runtime.UserRuntimeTest.setUpClass.__func__)
    tearDownClass = classmethod(test_user_runtime.UserRuntimeTest.tearDownClass.__func__)
    setUp = test_user_runtime.UserRuntimeTest.setUp
    tearDown = test_user_runtime.UserRuntimeTest.tearDown
    keel = test_user_runtime.UserRuntimeTest.keel
    keeld_log = test_user_runtime.UserRuntimeTest.keeld_log

    def test_kill_signal_given_inline_is_the_one_sent(self):
        # TERM ends the workload with 42; keel kill's default, KILL, would make it 137. The
        # old CLI skipped --signal=TERM and -sTERM and sent the default.
        for i, spelled in enumerate((["--signal=TERM"], ["-sTERM"], ["-s", "term"])):
            name = f"stubborn{i}"
            with self.subTest(spelled=spelled):
                r = self.keel("run", "-d", "--name", name, "busybox", "sh", "-c",
                              "trap 'exit 42' TERM; echo up; while :; do sleep 1; done")
                self.assertEqual(r.returncode, 0, r.stderr)
                # The trap is set once it said so; before, PID 1 would drop an unhandled TERM.
                self.assertTrue(keeltest.wait_for(lambda: self.keel("logs", name).stdout == "up\n", timeout=20))
                # Options after the name, too.
                r = self.keel("kill", *spelled, name) if i < 2 else self.keel("kill", name, *spelled)
                self.assertEqual((r.returncode, r.stdout), (0, f"{name}\n"), r.stderr)
                r = self.keel("logs", "-f", name)
                self.assertEqual(r.returncode, 42, r.stderr)
                self.assertEqual(self.keel("rm", name).returncode, 0)

    def test_stop_waits_until_the_workload_is_down(self):
        r = self.keel("run", "-d", "--name", "web", "busybox", "sleep", "1000")
        self.assertEqual(r.returncode, 0, r.stderr)
        r = self.keel("stop", "--time=1", "web")
        self.assertEqual((r.returncode, r.stdout), (0, "web\n"), r.stderr)
        # Down when stop returned: rm without -f accepts it.
        self.assertRegex(self.keel("ps", "-a").stdout, r"web\s+busybox\s+exited")
        self.assertEqual(self.keel("rm", "web").returncode, 0)


if __name__ == "__main__":
    unittest.main()
