"""The OCI runtime CLI, `keel runtime ...`, driven the way containerd or a person drives runc:
spec, create, state, start, kill, delete, run, list; bad bundles; a `runc spec` bundle."""

import errno
import json
import os
import shutil
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import keeltest  # noqa: E402
from keeltest import DEFAULT_CAPS, cap_mask, parse_kv  # noqa: E402

RUNTIME_ERROR = 125


class OciCliTest(keeltest.ContainerTestCase):

    def create(self, bundle, *extra, name="c"):
        cid = self.new_id(name)
        r = self.runtime.create(bundle, cid, *extra)
        self.assertEqual(r.returncode, 0, repr(r))
        return cid

    def status(self, cid):
        return self.runtime.state(cid)["status"]

    def wait_status(self, cid, status, timeout=5):
        last = keeltest.wait_for(lambda: self.status(cid) == status and status, timeout=timeout)
        self.assertEqual(last or self.status(cid), status, f"{cid} never became {status}")

    def assertRuntimeError(self, r, *needles):
        """A runtime (not container) failure: exit 125, `keel runtime: ...` naming needles."""
        self.assertNotEqual(r.returncode, 0, repr(r))
        if not keeltest.testing_runc():
            self.assertEqual(r.returncode, RUNTIME_ERROR, repr(r))
            self.assertIn("keel runtime: ", r.stderr, repr(r))
        for needle in needles:
            self.assertIn(needle, r.stderr, repr(r))

    # --- spec ---------------------------------------------------------------------------------

    def test_spec_writes_config_and_refuses_to_overwrite(self):
        d = os.path.join(self.tmp, "specdir")
        os.mkdir(d)
        r = self.runtime("spec", cwd=d)
        self.assertEqual(r.returncode, 0, repr(r))
        path = os.path.join(d, "config.json")
        with open(path, "rb") as f:
            first = f.read()
        config = json.loads(first)
        self.assertIn("ociVersion", config)
        self.assertEqual(config["root"]["path"], "rootfs")
        self.assertEqual(config["process"]["terminal"], True)
        self.assertTrue(config["process"]["args"])
        ns = {n["type"] for n in config["linux"]["namespaces"]}
        self.assertLessEqual({"pid", "mount", "ipc", "uts", "network"}, ns)
        for cap_set in ["bounding", "effective", "permitted"]:
            self.assertEqual(sorted(config["process"]["capabilities"][cap_set]), DEFAULT_CAPS)

        r = self.runtime("spec", cwd=d)
        self.assertNotEqual(r.returncode, 0, repr(r))
        self.assertIn("config.json", r.stderr)
        with open(path, "rb") as f:
            self.assertEqual(f.read(), first, "spec overwrote an existing config.json")

    def test_spec_bundle_flag_and_rootless(self):
        d = os.path.join(self.tmp, "elsewhere")
        os.mkdir(d)
        r = self.runtime("spec", "--rootless", "-b", d, cwd=self.tmp)
        self.assertEqual(r.returncode, 0, repr(r))
        self.assertFalse(os.path.exists(os.path.join(self.tmp, "config.json")))
        with open(os.path.join(d, "config.json")) as f:
            config = json.load(f)
        self.assertIn("user", [n["type"] for n in config["linux"]["namespaces"]])
        self.assertTrue(config["linux"]["uidMappings"])

    # --- lifecycle ----------------------------------------------------------------------------

    def test_create_start_kill_delete(self):
        bundle = self.bundle("/bin/probe", "sleep", "100")
        pid_file = os.path.join(self.tmp, "container.pid")
        cid = self.create(bundle, "--pid-file", pid_file)

        state = self.runtime.state(cid)
        self.assertEqual(state["id"], cid)
        self.assertEqual(state["status"], "created")
        self.assertIn("ociVersion", state)
        self.assertEqual(os.path.realpath(state["bundle"]), os.path.realpath(bundle.path))
        pid = state["pid"]
        self.assertIsInstance(pid, int)
        self.assertGreater(pid, 0)
        self.assertTrue(keeltest.process_exists(pid))
        with open(pid_file) as f:
            self.assertEqual(int(f.read().strip()), pid)

        # CVE-2019-5736: the process waiting to exec must not be running the runtime's binary
        # from disk, where a container could reach it through /proc/<pid>/exe and rewrite it.
        # (runc 1.1 uses a read-only bind mount instead of a memfd.)
        if not keeltest.testing_runc():
            self.assertIn("memfd:", os.readlink(f"/proc/{pid}/exe"))
        self.assertExeNotWritable(pid)

        r = self.runtime("start", cid)
        self.assertEqual(r.returncode, 0, repr(r))
        self.wait_status(cid, "running")
        self.assertEqual(self.runtime.state(cid)["pid"], pid)
        self.assertTrue(keeltest.wait_for(
            lambda: "probe" in os.readlink(f"/proc/{pid}/exe")), "the container never exec'd")

        r = self.runtime("kill", cid, "KILL")
        self.assertEqual(r.returncode, 0, repr(r))
        self.wait_status(cid, "stopped")
        self.assertFalse(keeltest.process_exists(pid))

        r = self.runtime("delete", cid)
        self.assertEqual(r.returncode, 0, repr(r))
        self.assertFalse(os.path.exists(self.runtime.state_dir(cid)))
        r = self.runtime("state", cid)
        self.assertNotEqual(r.returncode, 0, repr(r))
        self.assertIn(cid, r.stderr)
        self.assertNothingLeft(cid)

    def test_working_directory_cannot_leave_through_an_inherited_fd(self):
        # CVE-2024-21626: a descriptor the runtime held (its cgroup directory) must not be left
        # open in the child, where cwd /proc/self/fd/N would put the container on the host.
        marker = os.path.join(self.tmp, "host-marker")
        with open(marker, "w") as f:
            f.write("host\n")
        up = "../" * 12
        for fd in range(3, 9):
            bundle = self.bundle("/bin/sh", "-c", f"cat {up}{marker.lstrip('/')} && echo ESCAPED; pwd")
            bundle.config["process"]["cwd"] = f"/proc/self/fd/{fd}"
            bundle.save()
            cid = self.new_id(f"fd{fd}")
            r = self.runtime.run(bundle, cid)
            self.assertNotIn("ESCAPED", r.stdout, f"cwd /proc/self/fd/{fd}: {r!r}")
            self.assertNotEqual(r.returncode, 0, f"cwd /proc/self/fd/{fd} was accepted: {r!r}")
            self.assertNothingLeft(cid)

    def test_binary_on_a_read_only_mount_runs_as_it_is(self):
        # Keel's image binds /usr/bin/keel read-only on itself. A runtime reached that way
        # skips the memfd copy, and the CVE-2019-5736 move still fails: a container process
        # that kept /proc/<pid>/exe open (O_PATH) cannot open it for writing once the runtime
        # is gone (EROFS), nor while it runs.
        if keeltest.testing_runc():
            self.skipTest("keel's own re-exec")
        binary = os.path.join(self.tmp, "ro", "keel")
        os.makedirs(os.path.dirname(binary))
        shutil.copy(keeltest.keel_bin(), binary)
        bundle = self.bundle("/bin/probe", "sleep", "100")
        cid = self.new_id()
        script = (f"mount --bind -o ro {binary} {binary} && "
                  f"exec {binary} runtime --root {self.runtime.root} create --bundle {bundle.path} {cid}")
        # (Output to a file: the created container inherits it, and a pipe would stay open.)
        with open(os.path.join(self.tmp, "ro.err"), "w+") as err:
            r = subprocess.run(["unshare", "-m", "--propagation", "private", "sh", "-c", script],
                               stdin=subprocess.DEVNULL, stdout=err, stderr=err, timeout=30)
            err.seek(0)
            self.assertEqual(r.returncode, 0, err.read())
        self.addCleanup(self.runtime, "delete", "--force", cid)
        pid = self.runtime.state(cid)["pid"]
        # Not a memfd copy: the file itself (its path is the other mount namespace's).
        self.assertNotIn("memfd:", os.readlink(f"/proc/{pid}/exe"))
        here, there = os.stat(binary), os.stat(f"/proc/{pid}/exe")
        self.assertEqual((there.st_dev, there.st_ino), (here.st_dev, here.st_ino))
        kept = os.open(f"/proc/{pid}/exe", os.O_PATH)
        self.addCleanup(os.close, kept)
        with self.assertRaises(OSError) as e:
            os.open(f"/proc/self/fd/{kept}", os.O_WRONLY)
        self.assertIn(e.exception.errno, (errno.EROFS, errno.ETXTBSY))
        self.assertEqual(self.runtime("start", cid).returncode, 0)
        self.assertTrue(keeltest.wait_for(lambda: "probe" in os.readlink(f"/proc/{pid}/exe")))
        # Nothing runs the runtime's binary now: only the mount stands in the way.
        with self.assertRaises(OSError) as e:
            os.open(f"/proc/self/fd/{kept}", os.O_WRONLY)
        self.assertEqual(e.exception.errno, errno.EROFS)

    def assertExeNotWritable(self, pid):
        """Opening /proc/<pid>/exe for writing, or writing through it, must fail. The byte
        written is the one already there, so a failing test does not corrupt the binary."""
        path = f"/proc/{pid}/exe"
        with open(path, "rb") as f:
            first = f.read(1)
        try:
            fd = os.open(path, os.O_WRONLY)
        except OSError:
            return
        try:
            with self.assertRaises(OSError, msg=f"{path} ({os.readlink(path)}) is writable"):
                os.pwrite(fd, first, 0)
        finally:
            os.close(fd)

    def test_starting_container_is_not_dumpable_until_exec(self):
        # A container sharing another's PID namespace sees that one's init while the runtime
        # sets it up (its root and cwd the host's until pivot_root) and while `create` holds
        # it before exec. It must be non-dumpable all that time, so that /proc/PID of it is
        # closed to a same-uid process without CAP_SYS_PTRACE (CVE-2016-9962); once it runs
        # the container's program it is an ordinary process again.
        watcher = self.bundle("/bin/sh", "-c",
                              "while [ ! -s /tmp/pid ]; do sleep 0.05; done; p=$(cat /tmp/pid); "
                              "{ /bin/probe read /proc/$p/environ; /bin/probe ls /proc/$p/root; } > /tmp/r1.tmp; "
                              "mv /tmp/r1.tmp /tmp/r1; while [ ! -e /tmp/go ]; do sleep 0.05; done; "
                              "/bin/probe read /proc/$p/environ > /tmp/r2.tmp; mv /tmp/r2.tmp /tmp/r2; "
                              "/bin/probe sleep 100")
        watcher.config["root"]["readonly"] = False
        watcher.save()
        a = self.create(watcher, name="watcher")
        a_pid = self.runtime.state(a)["pid"]

        target = self.bundle("/bin/probe", "sleep", "100")
        target.remove_namespace("pid")
        target.add_namespace("pid", f"/proc/{a_pid}/ns/pid")
        b = self.create(target, name="target")
        b_pid = self.runtime.state(b)["pid"]
        seen_as = keeltest.proc_status_field(b_pid, "NSpid")[-1]
        tmp = os.path.join(watcher.rootfs, "tmp")
        with open(os.path.join(tmp, "pid"), "w") as f:
            f.write(seen_as + "\n")
        self.assertEqual(self.runtime("start", a).returncode, 0)
        self.assertTrue(keeltest.wait_for(lambda: os.path.exists(os.path.join(tmp, "r1")), timeout=10))
        with open(os.path.join(tmp, "r1")) as f:
            held = f.read().split()
        self.assertEqual(held, ["errno=EACCES", "errno=EACCES"], "the held init's /proc/PID was open to the other container")

        self.assertEqual(self.runtime("start", b).returncode, 0)
        self.assertTrue(keeltest.wait_for(lambda: "probe" in os.readlink(f"/proc/{b_pid}/exe")))
        open(os.path.join(tmp, "go"), "w").close()
        self.assertTrue(keeltest.wait_for(lambda: os.path.exists(os.path.join(tmp, "r2")), timeout=10))
        with open(os.path.join(tmp, "r2")) as f:
            running = f.read().strip()
        self.assertTrue(running.startswith("bytes="), f"after exec the program is dumpable again: {running}")
        for cid in [b, a]:
            self.assertEqual(self.runtime("delete", "--force", cid).returncode, 0)

    def test_delete_running_needs_force(self):
        bundle = self.bundle("/bin/probe", "sleep", "100")
        cid = self.create(bundle)
        pid = self.runtime.state(cid)["pid"]
        r = self.runtime("start", cid)
        self.assertEqual(r.returncode, 0, repr(r))
        self.wait_status(cid, "running")

        r = self.runtime("delete", cid)
        self.assertNotEqual(r.returncode, 0, repr(r))
        self.assertEqual(self.status(cid), "running")
        self.assertTrue(keeltest.process_exists(pid))

        r = self.runtime("delete", "--force", cid)
        self.assertEqual(r.returncode, 0, repr(r))
        self.assertTrue(keeltest.wait_for(lambda: not keeltest.process_exists(pid)))
        self.assertNothingLeft(cid)

    def test_delete_force_created(self):
        bundle = self.bundle("/bin/probe", "sleep", "100")
        cid = self.create(bundle)
        pid = self.runtime.state(cid)["pid"]
        r = self.runtime("delete", "-f", cid)
        self.assertEqual(r.returncode, 0, repr(r))
        self.assertTrue(keeltest.wait_for(lambda: not keeltest.process_exists(pid)))
        self.assertNothingLeft(cid)

    def test_kill_signal_forms(self):
        # PID 1 of a PID namespace only gets signals it handles: the shell traps TERM.
        script = "trap 'exit 0' TERM; while :; do sleep 0.05; done"
        for signal_name in ["TERM", "SIGTERM", "15"]:
            with self.subTest(signal=signal_name):
                bundle = self.bundle("/bin/sh", "-c", script)
                cid = self.create(bundle)
                self.assertEqual(self.runtime("start", cid).returncode, 0)
                self.wait_status(cid, "running")
                # Give the shell time to install its trap: before that, TERM is dropped.
                pid = self.runtime.state(cid)["pid"]
                self.assertTrue(keeltest.wait_for(
                    lambda: int(keeltest.proc_status_field(pid, "SigCgt")[0], 16) & (1 << 14)))
                r = self.runtime("kill", cid, signal_name)
                self.assertEqual(r.returncode, 0, repr(r))
                self.wait_status(cid, "stopped")
                self.assertEqual(self.runtime("delete", cid).returncode, 0)
                self.assertNothingLeft(cid)

    def test_kill_bad_signal(self):
        bundle = self.bundle("/bin/probe", "sleep", "100")
        cid = self.create(bundle)
        r = self.runtime("kill", cid, "BOGUS")
        self.assertNotEqual(r.returncode, 0, repr(r))
        self.assertIn("BOGUS", r.stderr)
        self.assertEqual(self.status(cid), "created")

    def test_duplicate_id_refused(self):
        bundle = self.bundle("/bin/probe", "sleep", "100")
        cid = self.create(bundle)
        pid = self.runtime.state(cid)["pid"]
        r = self.runtime.create(bundle, cid)
        self.assertNotEqual(r.returncode, 0, repr(r))
        self.assertIn(cid, r.stderr)
        state = self.runtime.state(cid)
        self.assertEqual((state["status"], state["pid"]), ("created", pid))

    def test_list(self):
        bundle = self.bundle("/bin/probe", "sleep", "100")
        ids = {self.create(bundle, name="a"), self.create(bundle, name="b")}

        r = self.runtime("list")
        self.assertEqual(r.returncode, 0, repr(r))
        for cid in ids:
            self.assertIn(cid, r.stdout)
        self.assertIn("created", r.stdout)

        r = self.runtime("list", "-q")
        self.assertEqual(r.returncode, 0, repr(r))
        self.assertEqual(set(r.stdout.split()), ids)

        r = self.runtime("list", "--format", "json")
        self.assertEqual(r.returncode, 0, repr(r))
        listed = json.loads(r.stdout)
        self.assertEqual({c["id"] for c in listed}, ids)
        self.assertEqual({c["status"] for c in listed}, {"created"})

    def test_state_unknown_id(self):
        r = self.runtime("state", "kt-no-such-container")
        self.assertNotEqual(r.returncode, 0, repr(r))
        self.assertIn("kt-no-such-container", r.stderr)

    def test_unknown_subcommand(self):
        r = self.runtime("frobnicate")
        self.assertNotEqual(r.returncode, 0, repr(r))
        self.assertIn("frobnicate", r.stderr)

    # --- run ----------------------------------------------------------------------------------

    def test_run_exit_code_with_bundle_as_cwd(self):
        bundle = self.bundle("/bin/probe", "exit", "5")
        cid = self.new_id()
        r = self.runtime("run", cid, cwd=bundle.path)
        self.assertEqual(r.returncode, 5, repr(r))
        self.assertNothingLeft(cid)

    def test_run_terminal_is_made_in_the_container(self):
        # process.terminal: a pty of the container's own devpts, as runc makes it, so its name
        # exists in there; the runtime proxies it, with the window size and the exit code.
        import pexpect
        bundle = self.bundle("/bin/sh", "-c", 'tty; [ -c "$(tty)" ] && echo name-exists; stty size; '
                             '[ "$(stat -c %t:%T /dev/console)" = "$(stat -L -c %t:%T /proc/self/fd/0)" ] && echo console-is-it; exit 7')
        bundle.config["process"]["terminal"] = True
        bundle.save()
        cid = self.new_id()
        argv = self.runtime.argv("run", "--bundle", bundle.path, cid)
        child = pexpect.spawn(argv[0], argv[1:], encoding="utf-8", timeout=20, dimensions=(30, 90))
        child.expect(pexpect.EOF)
        child.close()
        out = child.before.replace("\r", "")
        self.assertEqual(child.exitstatus, 7, out)
        # /dev/console is the terminal too (the runtime spec's default device).
        self.assertEqual(out.split("\n")[:4], ["/dev/pts/0", "name-exists", "30 90", "console-is-it"], out)
        self.assertNothingLeft(cid)

    def test_create_hands_the_terminal_to_the_console_socket(self):
        # create with process.terminal: the pty master arrives on --console-socket (SCM_RIGHTS)
        # before create returns; the container's output comes through it once started.
        import array
        import socket
        bundle = self.bundle("/bin/sh", "-c", "echo name-$(tty); exit 3")
        bundle.config["process"]["terminal"] = True
        bundle.save()
        path = os.path.join(self.tmp, "console.sock")
        listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        listener.bind(path)
        listener.listen(1)
        listener.settimeout(10)
        self.addCleanup(listener.close)
        cid = self.create(bundle, "--console-socket", path)
        conn, _ = listener.accept()
        fds = array.array("i")
        msg, anc, _, _ = conn.recvmsg(4096, socket.CMSG_SPACE(fds.itemsize))
        conn.close()
        for level, kind, data in anc:
            if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
                fds.frombytes(data[:len(data) - len(data) % fds.itemsize])
        self.assertEqual(len(fds), 1, (msg, anc))
        master = fds[0]
        self.addCleanup(os.close, master)
        self.assertEqual(self.runtime("start", cid).returncode, 0)
        out = b""
        while b"\n" not in out:
            out += os.read(master, 1024)
        self.assertEqual(out.replace(b"\r", b"").split(b"\n")[0], b"name-/dev/pts/0")
        self.wait_status(cid, "stopped")
        self.assertEqual(self.runtime("delete", cid).returncode, 0)

    def test_run_detached(self):
        bundle = self.bundle("/bin/probe", "sleep", "100")
        cid = self.new_id()
        pid_file = os.path.join(self.tmp, "run.pid")
        r = self.runtime.run(bundle, cid, "-d", "--pid-file", pid_file, timeout=10)
        self.assertEqual(r.returncode, 0, repr(r))
        state = self.runtime.state(cid)
        self.assertEqual(state["status"], "running")
        with open(pid_file) as f:
            self.assertEqual(int(f.read()), state["pid"])
        r = self.runtime("delete", "--force", cid)
        self.assertEqual(r.returncode, 0, repr(r))
        self.assertTrue(keeltest.wait_for(lambda: not keeltest.process_exists(state["pid"])))
        self.assertNothingLeft(cid)

    def test_runc_spec_bundle_runs_unchanged(self):
        bundle = self.bundle("/bin/sh", "-c", "/bin/probe caps; /bin/probe hostname; /bin/probe pid",
                             generator="runc")
        r = self.run_container(bundle)
        self.assertEqual(r.returncode, 0, repr(r))
        out = parse_kv(r.stdout)
        want = f"{cap_mask(DEFAULT_CAPS):016x}"
        self.assertEqual((out["CapBnd"], out["CapPrm"], out["CapEff"]), (want, want, want))
        self.assertEqual(out["CapInh"], f"{0:016x}")
        self.assertEqual(out["NoNewPrivs"], "1")
        self.assertEqual(out["nodename"], "runc")
        self.assertEqual(out["pid"], "1")

    # --- bad bundles: clear error, runtime exit code, nothing left behind ------------------------

    def bad_bundle_cases(self, bundle, *needles):
        """Both `run` and `create` refuse the bundle, name the problem, leave nothing."""
        for command in ["run", "create"]:
            with self.subTest(command=command):
                cid = self.new_id(command)
                r = self.runtime(command, "--bundle", bundle.path, cid)
                self.assertRuntimeError(r, *needles)
                self.assertNothingLeft(cid)
                r = self.runtime("state", cid)
                self.assertNotEqual(r.returncode, 0, repr(r))

    def test_missing_rootfs(self):
        bundle = self.bundle("/bin/probe", "pid")
        shutil.rmtree(bundle.rootfs)
        self.bad_bundle_cases(bundle, "root")
        cid = self.new_id()
        r = self.runtime.run(bundle, cid)
        self.assertTrue("root.path" in r.stderr or bundle.rootfs in r.stderr, repr(r))

    def test_invalid_json(self):
        bundle = self.bundle("/bin/probe", "pid")
        with open(bundle.config_path, "w") as f:
            f.write('{"ociVersion": "1.0.2", "process": {')
        self.bad_bundle_cases(bundle, "config.json")

    def test_missing_config(self):
        bundle = self.bundle("/bin/probe", "pid")
        os.unlink(bundle.config_path)
        self.bad_bundle_cases(bundle, "config.json")

    def test_unknown_capability(self):
        bundle = self.bundle("/bin/probe", "pid")
        bundle.config["process"]["capabilities"]["bounding"].append("CAP_FOO")
        bundle.save()
        self.bad_bundle_cases(bundle, "CAP_FOO", "capabilities.bounding")

    def test_relative_mount_destination(self):
        bundle = self.bundle("/bin/probe", "pid")
        index = len(bundle.config["mounts"])
        bundle.config["mounts"].append(
            {"destination": "relative/dir", "type": "tmpfs", "source": "tmpfs"})
        bundle.save()
        self.bad_bundle_cases(bundle, f"mounts[{index}].destination")

    def test_proc_mount_outside_proc(self):
        # Masked and read-only paths are /proc's: a procfs at /p would give a root container
        # the host's writable /p/sys/kernel and /p/sysrq-trigger.
        if keeltest.testing_runc():
            self.skipTest("Debian's runc 1.1.5 runs this bundle: its checkProcMount passes a proc outside /proc")
        bundle = self.bundle("/bin/probe", "pid")
        index = len(bundle.config["mounts"])
        bundle.config["mounts"].append({"destination": "/p", "type": "proc", "source": "proc"})
        bundle.save()
        self.bad_bundle_cases(bundle, f"mounts[{index}].destination", "/proc")

    def test_mount_steered_into_proc_by_an_image_link(self):
        # The image's /data -> proc/self/fd, and a volume mounted on /data after the proc
        # mount: it would land on /proc/1/fd, and every later /proc/self/fd/N the chain names
        # (read-only /proc/sys, the masks) would resolve into that volume. A volume holding
        # links to an empty directory then leaves /proc/sys writable and nothing masked (the
        # host's printk_ratelimit written from the container; restored below).
        bundle = self.bundle("/bin/sh", "-c", "v=$(cat /proc/sys/kernel/printk_ratelimit) && "
                             "echo $v > /proc/sys/kernel/printk_ratelimit && echo WROTE; "
                             "head -c 40 /proc/timer_list; echo; echo done")
        # The links are read after pivot_root: /h is the container's own empty directory.
        os.makedirs(os.path.join(bundle.rootfs, "h"))
        vol = os.path.join(self.tmp, "vol")
        os.makedirs(vol)
        for n in range(1024):
            os.symlink("/h", os.path.join(vol, str(n)))
        os.symlink("proc/self/fd", os.path.join(bundle.rootfs, "data"))
        bundle.config["mounts"].append({"destination": "/data", "type": "bind", "source": vol,
                                        "options": ["rbind", "rw"]})
        bundle.save()
        with open("/proc/sys/kernel/printk_ratelimit") as f:
            before = f.read()
        try:
            r = self.run_container(bundle)
        finally:
            with open("/proc/sys/kernel/printk_ratelimit", "w") as f:
                f.write(before)
        self.assertNotIn("WROTE", r.stdout, r)
        self.assertNotIn("Timer List", r.stdout, r)
        if not keeltest.testing_runc():
            self.assertRuntimeError(r, "/data", "/proc")

    def test_image_proc_as_a_link_is_refused(self):
        if keeltest.testing_runc():
            self.skipTest("runc follows the image's /proc link (and mounts proc where it leads)")
        bundle = self.bundle("/bin/probe", "pid")
        procdir = os.path.join(bundle.rootfs, "proc")
        os.rmdir(procdir)
        os.makedirs(os.path.join(bundle.rootfs, "elsewhere"))
        os.symlink("elsewhere", procdir)
        bundle.save()
        self.bad_bundle_cases(bundle, "/proc")


if __name__ == "__main__":
    import unittest
    unittest.main(verbosity=2)
