"""Real containers through `keel runtime run`: what the process inside sees, told by the probe.

Where a fact could hold by accident (a path that happens to be empty, a syscall that fails for
another reason), the test also runs a control container without the feature and asserts the
fact changes, so no assertion here is unable to fail.
"""

import os
import stat
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import keeltest  # noqa: E402
from keeltest import DEFAULT_CAPS, cap_mask, parse_kv, parse_kv_all  # noqa: E402

# Syscalls a static probe and the runtime's last steps before execve need; everything else is
# refused under the allow-list profile.
ALLOWED_SYSCALLS = [
    "read", "write", "open", "openat", "close", "close_range", "stat", "fstat", "lstat",
    "newfstatat", "statx", "poll", "lseek", "mmap", "mprotect", "munmap", "brk", "rt_sigaction",
    "rt_sigprocmask", "rt_sigreturn", "ioctl", "pread64", "pwrite64", "readv", "writev",
    "access", "faccessat", "faccessat2", "pipe", "pipe2", "select", "pselect6", "sched_yield",
    "mremap", "madvise", "dup", "dup2", "dup3", "nanosleep", "clock_nanosleep", "getpid",
    "getppid", "gettid", "getuid", "getgid", "geteuid", "getegid", "getgroups", "setuid",
    "setgid", "setgroups", "setresuid", "setresgid", "capget", "capset", "prctl", "arch_prctl",
    "exit", "exit_group", "wait4", "waitid", "kill", "tgkill", "tkill", "uname", "fcntl",
    "getdents64", "getcwd", "chdir", "fchdir", "readlink", "readlinkat", "getrlimit",
    "setrlimit", "prlimit64", "sigaltstack", "futex", "set_tid_address", "set_robust_list",
    "rseq", "execve", "execveat", "clock_gettime", "gettimeofday", "time", "getrandom",
    "epoll_create1", "epoll_ctl", "epoll_wait", "epoll_pwait", "sched_getaffinity", "umask",
    "clone", "clone3", "fork", "vfork", "rt_sigtimedwait", "restart_syscall", "getpgrp",
    "setsid", "getsid", "sysinfo", "fstatfs", "statfs",
]

DEV_REQUIRED = {"null", "zero", "full", "random", "urandom", "tty", "ptmx", "pts", "shm",
                "mqueue"}
# Symlinks runc also creates; /dev/core only where /proc/kcore exists.
DEV_ALLOWED = DEV_REQUIRED | {"fd", "stdin", "stdout", "stderr", "core"}
DEV_NUMBERS = {"null": "1:3", "zero": "1:5", "full": "1:7", "random": "1:8",
               "urandom": "1:9", "tty": "5:0"}


def hexmask(mask):
    return f"{mask:016x}"


class RuntimeTest(keeltest.ContainerTestCase):

    def probe(self, *args, edit=None, expect_exit=0, **run_kw):
        """Runs `/bin/probe ARGS...` in a fresh container; `edit(bundle)` adjusts config.json
        first. Returns the probe's stdout."""
        bundle = self.bundle("/bin/probe", *args)
        if edit:
            edit(bundle)
            bundle.save()
        r = self.run_container(bundle, **run_kw)
        self.assertEqual(r.returncode, expect_exit, repr(r))
        return r.stdout

    # --- process identity -----------------------------------------------------------------

    def test_pid_1(self):
        out = parse_kv(self.probe("pid"))
        self.assertEqual(out["pid"], "1")
        self.assertEqual(out["ppid"], "0")

    def test_host_processes_invisible(self):
        host_pids = [p for p in os.listdir("/proc") if p.isdigit()]
        self.assertGreater(len(host_pids), 1)
        self.assertEqual(self.probe("pids").split(), ["1"])

    def test_hostname(self):
        def edit(b):
            b.config["hostname"] = "keel-probe-host"
        self.assertEqual(parse_kv(self.probe("hostname", edit=edit))["nodename"],
                         "keel-probe-host")

    def test_environment_cwd_and_rlimits(self):
        def edit(b):
            # HOME set: runc adds one when it is missing.
            b.config["process"]["env"] = ["PATH=/bin", "HOME=/tmp", "KEEL_TEST=yes it is"]
            b.config["process"]["cwd"] = "/tmp"
            b.config["process"]["rlimits"] = [
                {"type": "RLIMIT_NOFILE", "soft": 123, "hard": 456}]
        self.assertEqual(self.probe("env", edit=edit).splitlines(),
                         ["PATH=/bin", "HOME=/tmp", "KEEL_TEST=yes it is"])
        self.assertEqual(self.probe("cwd", edit=edit).strip(), "/tmp")
        limits = parse_kv(self.probe("rlimit", "NOFILE", edit=edit))
        self.assertEqual((limits["soft"], limits["hard"]), ("123", "456"))

    def test_user_and_groups(self):
        def edit(b):
            b.config["process"]["user"] = {"uid": 1000, "gid": 1001,
                                           "additionalGids": [20, 30]}
        ids = parse_kv(self.probe("ids", edit=edit))
        self.assertEqual((ids["uid"], ids["euid"], ids["gid"], ids["egid"]),
                         ("1000", "1000", "1001", "1001"))
        self.assertEqual(sorted(ids["groups"].split(",")), ["20", "30"])

    # --- capabilities -----------------------------------------------------------------------

    def test_default_capabilities(self):
        caps = parse_kv(self.probe("caps"))
        want = hexmask(cap_mask(DEFAULT_CAPS))
        self.assertEqual(want, "0000000020000420")
        self.assertEqual(caps["CapBnd"], want)
        self.assertEqual(caps["CapPrm"], want)
        self.assertEqual(caps["CapEff"], want)
        self.assertEqual(caps["CapInh"], hexmask(0))

    def test_exact_capability_sets_root(self):
        # For uid 0 the kernel's execve rule makes permitted = bounding | inheritable and
        # effective = permitted, so the bounding set is what a root process ends up with.
        bounding = ["CAP_CHOWN", "CAP_SETUID", "CAP_SETGID", "CAP_NET_RAW", "CAP_SYS_CHROOT"]

        def edit(b):
            b.set_capabilities(bounding, inheritable=[], ambient=[])
        caps = parse_kv(self.probe("caps", edit=edit))
        self.assertEqual(caps["CapBnd"], hexmask(cap_mask(bounding)))
        self.assertEqual(caps["CapPrm"], hexmask(cap_mask(bounding)))
        self.assertEqual(caps["CapEff"], hexmask(cap_mask(bounding)))
        self.assertEqual(caps["CapInh"], hexmask(0))
        self.assertEqual(caps["CapAmb"], hexmask(0))

    def test_exact_capability_sets_with_ambient(self):
        # A non-root process keeps across execve exactly its ambient set (as permitted and
        # effective), its inheritable set and its bounding set: each is observable.
        bounding = ["CAP_CHOWN", "CAP_KILL", "CAP_NET_BIND_SERVICE", "CAP_NET_RAW"]
        ambient = ["CAP_NET_BIND_SERVICE", "CAP_NET_RAW"]

        def edit(b):
            b.config["process"]["user"] = {"uid": 1000, "gid": 1000}
            b.set_capabilities(bounding, effective=ambient, permitted=ambient,
                               inheritable=ambient, ambient=ambient)
        caps = parse_kv(self.probe("caps", edit=edit))
        self.assertEqual(caps["CapBnd"], hexmask(cap_mask(bounding)))
        self.assertEqual(caps["CapInh"], hexmask(cap_mask(ambient)))
        self.assertEqual(caps["CapAmb"], hexmask(cap_mask(ambient)))
        self.assertEqual(caps["CapPrm"], hexmask(cap_mask(ambient)))
        self.assertEqual(caps["CapEff"], hexmask(cap_mask(ambient)))

    def test_non_root_without_ambient_has_no_capabilities(self):
        bounding = ["CAP_CHOWN", "CAP_KILL"]

        def edit(b):
            b.config["process"]["user"] = {"uid": 1000, "gid": 1000}
            b.set_capabilities(bounding)
        caps = parse_kv(self.probe("caps", edit=edit))
        self.assertEqual(caps["CapBnd"], hexmask(cap_mask(bounding)))
        for key in ["CapPrm", "CapEff", "CapInh", "CapAmb"]:
            self.assertEqual(caps[key], hexmask(0), key)

    def test_no_new_privs(self):
        self.assertEqual(parse_kv(self.probe("caps"))["NoNewPrivs"], "1")

        def edit(b):
            b.config["process"]["noNewPrivileges"] = False
        self.assertEqual(parse_kv(self.probe("caps", edit=edit))["NoNewPrivs"], "0")

    # --- seccomp ----------------------------------------------------------------------------

    # CAP_SYS_ADMIN and CAP_SYS_BOOT so that, without seccomp, mount succeeds and kexec_load
    # gets past its permission check: EPERM can then only come from the filter.
    SECCOMP_CAPS = DEFAULT_CAPS + ["CAP_SYS_ADMIN", "CAP_SYS_BOOT"]
    REFUSED = ["mount", "keyctl", "kexec_load"]

    def seccomp_run(self, seccomp):
        """{syscall: result} for REFUSED + getpid, plus the Seccomp mode, in one container."""
        script = "; ".join(f"echo {s}=$(/bin/probe syscall {s})"
                           for s in self.REFUSED + ["getpid"])
        script += "; /bin/probe caps"

        def edit(b):
            b.set_capabilities(self.SECCOMP_CAPS)
            if seccomp is not None:
                b.config["linux"]["seccomp"] = seccomp
        bundle = self.bundle("/bin/sh", "-c", script)
        edit(bundle)
        bundle.save()
        r = self.run_container(bundle)
        self.assertEqual(r.returncode, 0, repr(r))
        return parse_kv(r.stdout)

    def test_seccomp_control_without_filter(self):
        out = self.seccomp_run(None)
        self.assertEqual(out["Seccomp"], "0")
        self.assertEqual(out["mount"], "ok")
        for name in ["keyctl", "kexec_load"]:
            self.assertNotEqual(out[name], "errno=EPERM", name)

    def test_seccomp_refuses_listed_syscalls(self):
        out = self.seccomp_run({
            "defaultAction": "SCMP_ACT_ALLOW",
            "architectures": ["SCMP_ARCH_X86_64"],
            "syscalls": [{"names": self.REFUSED, "action": "SCMP_ACT_ERRNO"}],
        })
        self.assertEqual(out["Seccomp"], "2")
        for name in self.REFUSED:
            self.assertEqual(out[name], "errno=EPERM", name)
        self.assertEqual(out["getpid"], "ok")

    def test_seccomp_allow_list(self):
        out = self.seccomp_run({
            "defaultAction": "SCMP_ACT_ERRNO",
            "architectures": ["SCMP_ARCH_X86_64"],
            "syscalls": [{"names": ALLOWED_SYSCALLS, "action": "SCMP_ACT_ALLOW"}],
        })
        self.assertEqual(out["Seccomp"], "2")
        for name in self.REFUSED:
            self.assertEqual(out[name], "errno=EPERM", name)
        self.assertEqual(out["getpid"], "ok")

    def test_seccomp_filter_is_the_last_step_before_exec(self):
        # Without no_new_privs the filter used to go in before the runtime's own close_range,
        # getcwd and exec-fifo steps: a profile refusing those failed the start. It comes last
        # now, and the CAP_SYS_ADMIN that installing it takes does not reach the container.
        profile = {"defaultAction": "SCMP_ACT_ALLOW", "architectures": ["SCMP_ARCH_X86_64"],
                   "syscalls": [{"names": ["close_range", "getcwd"], "action": "SCMP_ACT_ERRNO"}]}
        for user, want_caps in [(0, DEFAULT_CAPS), (1000, [])]:
            for nnp in [False, True]:
                if keeltest.testing_runc() and not nnp:
                    continue  # runc 1.1.5 fails too: "failed to verify if current working directory is safe: EPERM"
                with self.subTest(uid=user, no_new_privileges=nnp):
                    def edit(b):
                        b.config["process"]["noNewPrivileges"] = nnp
                        b.config["process"]["user"] = {"uid": user, "gid": user}
                        b.config["linux"]["seccomp"] = profile
                    caps = parse_kv(self.probe("caps", edit=edit))
                    self.assertEqual(caps["Seccomp"], "2")
                    self.assertEqual(caps["NoNewPrivs"], "1" if nnp else "0")
                    for key in ["CapPrm", "CapEff"]:
                        self.assertEqual(caps[key], hexmask(cap_mask(want_caps)), key)
                    # The profile is in force in the container.
                    bundle = self.bundle("/bin/probe", "cwd")
                    edit(bundle)
                    bundle.save()
                    r = self.run_container(bundle)
                    self.assertNotEqual(r.returncode, 0, repr(r))
                    self.assertIn("EPERM", r.stdout + r.stderr, repr(r))

    # --- filesystem -------------------------------------------------------------------------

    def test_readonly_root_refuses_writes(self):
        self.assertEqual(self.probe("write", "/x").strip(), "errno=EROFS")

        def writable(b):
            b.config["root"]["readonly"] = False
        bundle_out = self.probe("write", "/x", edit=writable)
        self.assertEqual(bundle_out.strip(), "ok")

    def test_masked_paths_read_empty(self):
        masked_files = ["/proc/timer_list", "/proc/keys", "/proc/kcore", "/proc/sched_debug"]
        masked_dirs = ["/sys/firmware", "/proc/acpi", "/proc/scsi"]
        files = [p for p in masked_files if os.path.exists(p)]
        dirs = [p for p in masked_dirs if os.path.isdir(p) and os.listdir(p)]
        self.assertIn("/proc/timer_list", files)
        script = "; ".join([f"echo {p}=$(/bin/probe read {p})" for p in files]
                           + [f"echo {p}=$(/bin/probe ls {p} | wc -l)" for p in dirs])

        def run(masked):
            bundle = self.bundle("/bin/sh", "-c", script)
            spec_masked = bundle.config["linux"].get("maskedPaths", [])
            for p in masked_files + ["/sys/firmware"]:
                self.assertIn(p, spec_masked, "spec's default maskedPaths")
            if not masked:
                bundle.config["linux"]["maskedPaths"] = []
            bundle.save()
            r = self.run_container(bundle)
            self.assertEqual(r.returncode, 0, repr(r))
            return parse_kv(r.stdout)

        out = run(masked=True)
        for p in files:
            self.assertEqual(out[p], "bytes=0", p)
        for p in dirs:
            self.assertEqual(out[p], "0", p)
        control = run(masked=False)
        self.assertNotEqual(control["/proc/timer_list"], "bytes=0")
        for p in dirs:
            self.assertNotEqual(control[p], "0", p)

    def test_proc_sys_readonly(self):
        out = self.probe("write", "/proc/sys/kernel/hostname")
        self.assertEqual(out.strip(), "errno=EROFS")
        mounts = keeltest.mountinfo_entries(self.probe("mounts"))
        proc_sys = [m for m in mounts if m["mountpoint"] == "/proc/sys"]
        self.assertTrue(proc_sys, "no mount at /proc/sys")
        self.assertIn("ro", proc_sys[-1]["options"])

    def test_dev_has_only_default_nodes(self):
        entries = set(self.probe("ls", "/dev").split())
        self.assertLessEqual(DEV_REQUIRED, entries)
        self.assertLessEqual(entries, DEV_ALLOWED, f"unexpected: {entries - DEV_ALLOWED}")
        for name, rdev in DEV_NUMBERS.items():
            st = parse_kv(self.probe("stat", f"/dev/{name}"))
            self.assertEqual((st["type"], st["rdev"]), ("char", rdev), name)
        mounts = keeltest.mountinfo_entries(self.probe("mounts"))
        dev = [m for m in mounts if m["mountpoint"] == "/dev"]
        self.assertTrue(dev and dev[-1]["fstype"] == "tmpfs", f"/dev is not a tmpfs: {dev}")

    def test_devpts_is_a_new_instance(self):
        with open("/proc/self/mountinfo") as f:
            host_devpts = {m["dev"] for m in keeltest.mountinfo_entries(f.read())
                           if m["fstype"] == "devpts"}
        mounts = keeltest.mountinfo_entries(self.probe("mounts"))
        pts = [m for m in mounts if m["mountpoint"] == "/dev/pts"]
        self.assertTrue(pts, "no /dev/pts mount")
        self.assertEqual(pts[-1]["fstype"], "devpts")
        self.assertNotIn(pts[-1]["dev"], host_devpts, "/dev/pts is the host's devpts")

    def test_mount_destination_symlink_escape_refused(self):
        host_etc = sorted(os.listdir("/etc"))
        for dest in ["/evil/x", "/evil"]:
            with self.subTest(destination=dest):
                bundle = self.bundle("/bin/probe", "pid")
                os.symlink("/etc", os.path.join(bundle.rootfs, "evil"))
                bundle.config["mounts"].append(
                    {"destination": dest, "type": "tmpfs", "source": "tmpfs",
                     "options": ["nosuid", "nodev", "size=1m"]})
                bundle.save()
                r = self.run_container(bundle)
                self.assertNotEqual(r.returncode, 0, repr(r))
                self.assertIn("/evil", r.stderr, repr(r))
                self.assertEqual(sorted(os.listdir("/etc")), host_etc)
                self.assertFalse(os.path.lexists("/etc/x"))
                self.assertFalse(os.path.lexists(os.path.join(bundle.rootfs, "etc", "x")),
                                 "created the escaped destination inside the rootfs")
                self.assertEqual(keeltest.mounts_mentioning(" /etc "), [])

    # --- the image's own /dev (no tmpfs mounted there) -------------------------------------

    @staticmethod
    def without_dev_tmpfs(bundle):
        bundle.config["mounts"] = [m for m in bundle.config["mounts"] if m["destination"] != "/dev"]
        bundle.save()

    def test_device_node_in_the_image_is_replaced_never_followed(self):
        # Without a tmpfs on /dev the runtime makes its nodes in the image's /dev: whatever
        # the image has where a node goes must not be followed out of the rootfs (the node's
        # chmod made a host file rw-rw-rw-) nor kept when it is not that device.
        victim = os.path.join(self.tmp, "victim")
        with open(victim, "w") as f:
            f.write("host\n")
        os.chmod(victim, 0o600)
        cases = {"absolute symlink to a host file": victim, "symlink out of the rootfs": "../..",
                 "another device": None}
        for name, target in cases.items():
            with self.subTest(name):
                os.chmod(victim, 0o600)
                bundle = self.bundle("/bin/probe", "stat", "/dev/null")
                self.without_dev_tmpfs(bundle)
                node = os.path.join(bundle.rootfs, "dev", "null")
                if target is None:
                    os.mknod(node, stat.S_IFCHR | 0o600, os.makedev(1, 5))
                else:
                    os.symlink(target, node)
                bundle_mode = stat.S_IMODE(os.stat(bundle.path).st_mode)
                r = self.run_container(bundle)
                self.assertEqual(stat.S_IMODE(os.stat(victim).st_mode), 0o600, f"host file's mode changed: {r!r}")
                self.assertEqual(stat.S_IMODE(os.stat(bundle.path).st_mode), bundle_mode,
                                 f"the bundle directory's mode changed: {r!r}")
                if keeltest.testing_runc():
                    continue  # runc 1.1 keeps what the image has there (it ignores EEXIST)
                self.assertEqual(r.returncode, 0, repr(r))
                st = parse_kv(r.stdout)
                self.assertEqual((st["type"], st["rdev"], st["mode"]), ("char", "1:3", "0666"))

    def test_masked_paths_are_not_binds_of_what_dev_null_points_to(self):
        # CVE-2025-31133: masking binds /dev/null over /proc/keys and /proc/timer_list. With
        # the image's /dev, a /dev/null symlink made them read-write binds of its target.
        if keeltest.testing_runc():
            # With root.readonly false it exposes /etc/exposed exactly so.
            self.skipTest("Debian's runc 1.1.5 predates the CVE-2025-31133 fix (runc 1.2.8)")
        script = "for p in /proc/keys /proc/timer_list; do echo pwned > $p; echo $p=$(/bin/probe read $p); done"
        bundle = self.bundle("/bin/sh", "-c", script)
        self.without_dev_tmpfs(bundle)
        exposed = os.path.join(bundle.rootfs, "etc", "exposed")
        with open(exposed, "w") as f:
            f.write("secret\n")
        os.symlink("../etc/exposed", os.path.join(bundle.rootfs, "dev", "null"))
        r = self.run_container(bundle)
        with open(exposed) as f:
            self.assertEqual(f.read(), "secret\n", f"a masked path was a bind of /etc/exposed: {r!r}")
        self.assertEqual(r.returncode, 0, repr(r))
        out = parse_kv(r.stdout)
        self.assertEqual((out["/proc/keys"], out["/proc/timer_list"]), ("bytes=0", "bytes=0"), repr(r))

    # --- sysctls ----------------------------------------------------------------------------

    def sysctl_run(self, sysctls, *args, edit=None):
        bundle = self.bundle(*(args or ("/bin/probe", "pid")))
        bundle.config["linux"]["sysctl"] = sysctls
        if edit:
            edit(bundle)
        bundle.save()
        return self.run_container(bundle)

    @staticmethod
    def read_sysctl(key):
        with open("/proc/sys/" + key.replace(".", "/")) as f:
            return f.read()

    def restore_sysctl_after(self, key):
        before = self.read_sysctl(key)

        def restore():
            if self.read_sysctl(key) != before:
                with open("/proc/sys/" + key.replace(".", "/"), "w") as f:
                    f.write(before)
        self.addCleanup(restore)
        return before

    def test_sysctls_of_the_host_are_refused(self):
        def no_uts(b):
            b.remove_namespace("uts")
            b.config.pop("hostname", None)
        cases = [("kernel.printk_ratelimit_burst", "17", None), ("kernel.hostname", "keel-renamed", no_uts),
                 ("net.ipv4.ip_forward", "1", lambda b: b.remove_namespace("network"))]
        for key, value, edit in cases:
            with self.subTest(key):
                before = self.restore_sysctl_after(key)
                self.assertNotEqual(before.strip(), value)
                r = self.sysctl_run({key: value}, edit=edit)
                self.assertEqual(self.read_sysctl(key), before, f"the host's {key} changed: {r!r}")
                self.assertNotEqual(r.returncode, 0, repr(r))
                self.assertIn(key, r.stderr)
                if not keeltest.testing_runc():
                    self.assertEqual(r.returncode, 125, repr(r))
                    self.assertIn("linux.sysctl", r.stderr)

    def test_namespaced_sysctls_are_set_in_the_container(self):
        keys = {"kernel.msgmax": "12345", "net.ipv4.ip_forward": "1", "kernel.domainname": "keel.test"}
        before = {k: self.restore_sysctl_after(k) for k in keys}
        script = "; ".join(f"echo {k}=$(cat /proc/sys/{k.replace('.', '/')})" for k in keys)
        r = self.sysctl_run(keys, "/bin/sh", "-c", script)
        self.assertEqual(r.returncode, 0, repr(r))
        self.assertEqual(parse_kv(r.stdout), keys)
        for k in keys:
            self.assertEqual(self.read_sysctl(k), before[k], k)

    # --- process lifecycle ------------------------------------------------------------------

    def test_exec_failure_names_stage(self):
        bundle = self.bundle("/nonexistent")
        r = self.run_container(bundle)
        self.assertEqual(r.returncode, 127, repr(r))
        self.assertIn("exec", r.stderr)
        self.assertIn("ENOENT", r.stderr)

    def test_exit_code_propagates(self):
        self.probe("exit", "7", expect_exit=7)
        self.probe("exit", "0", expect_exit=0)

    def test_fatal_signal_exit_code(self):
        # PID 1 of a PID namespace cannot be killed by its own signals; a real fault can.
        self.probe("fault", expect_exit=128 + 11)

    def test_signal_exit_code_without_pid_namespace(self):
        def edit(b):
            b.remove_namespace("pid")
        self.probe("kill", "15", edit=edit, expect_exit=128 + 15)

    def test_no_leaked_fds(self):
        with open(os.path.join(self.tmp, "inherited"), "w") as leak:
            fd = leak.fileno()
            os.set_inheritable(fd, True)
            out = self.probe("fds", pass_fds=(fd,))
        fds = sorted(int(line.partition("=")[0]) for line in out.splitlines())
        self.assertEqual(fds, [0, 1, 2], out)

    # --- device cgroup -----------------------------------------------------------------------
    # The probe makes nodes with CAP_MKNOD and no user namespace, as an engine's container
    # has them; the device cgroup decides what opening them does. The probe's open does not
    # create, so EPERM there is the device cgroup's answer (the files are 0666, opened as root).

    def device_steps(self, steps, edit=None):
        """Runs each probe step (`mknod ...` / `open ...`) in one container with CAP_MKNOD and
        returns the answers in order."""
        script = "; ".join("/bin/probe " + step for step in steps)

        bundle = self.bundle("/bin/sh", "-c", script)
        bundle.set_capabilities(DEFAULT_CAPS + ["CAP_MKNOD"])
        bundle.config["linux"].pop("resources", None)
        if edit:
            edit(bundle)
        bundle.save()
        r = self.run_container(bundle)
        self.assertEqual(r.returncode, 0, repr(r))
        lines = r.stdout.split()
        self.assertEqual(len(lines), len(steps), repr(r))
        return dict(zip(steps, lines))

    def test_device_cgroup_without_rules_allows_only_the_defaults(self):
        # No rules at all: deny-all and the default set, not "no device cgroup".
        got = self.device_steps([
            "mknod /dev/hostfuse c 10 229", "open /dev/hostfuse rw", "open /dev/hostfuse r",
            "mknod /dev/hostloop b 7 0", "open /dev/hostloop r",
            "open /dev/null rw", "open /dev/zero r", "open /dev/urandom r", "open /dev/full w",
            "open /dev/tty rw"])
        self.assertEqual(got, {
            # Making a node is allowed (runc allows mknod of anything); opening it is not.
            "mknod /dev/hostfuse c 10 229": "ok", "open /dev/hostfuse rw": "errno=EPERM",
            "open /dev/hostfuse r": "errno=EPERM",
            "mknod /dev/hostloop b 7 0": "ok", "open /dev/hostloop r": "errno=EPERM",
            "open /dev/null rw": "ok", "open /dev/zero r": "ok", "open /dev/urandom r": "ok",
            "open /dev/full w": "ok",
            # Past the device cgroup: the tty driver says there is no controlling terminal.
            "open /dev/tty rw": "errno=ENXIO"})

    def test_device_cgroup_engine_rules(self):
        # What containerd and Docker write: deny-all, then allow rules (here fuse read-write and
        # loop-control read-only), the nodes in linux.devices. /dev/kmsg is listed but not
        # allowed: the engine's deny-all takes it back.
        def edit(b):
            b.config["linux"]["devices"] = [
                {"path": p, "type": "c", "major": ma, "minor": mi, "fileMode": 0o666}
                for p, ma, mi in [("/dev/fuse", 10, 229), ("/dev/loop-control", 10, 237),
                                  ("/dev/kmsg", 1, 11)]]
            b.config["linux"]["resources"] = {"devices": [
                {"allow": False, "access": "rwm"},
                {"allow": True, "type": "c", "major": 10, "minor": 229, "access": "rwm"},
                {"allow": True, "type": "c", "major": 10, "minor": 237, "access": "r"}]}
        got = self.device_steps([
            "open /dev/fuse rw", "open /dev/loop-control r", "open /dev/loop-control w",
            "open /dev/loop-control rw", "open /dev/kmsg r", "mknod /dev/other c 10 229",
            "open /dev/other rw", "open /dev/null rw"], edit=edit)
        self.assertEqual(got, {
            "open /dev/fuse rw": "ok", "open /dev/loop-control r": "ok",
            "open /dev/loop-control w": "errno=EPERM", "open /dev/loop-control rw": "errno=EPERM",
            "open /dev/kmsg r": "errno=EPERM",
            # The rule is the device's number, whatever the node's name.
            "mknod /dev/other c 10 229": "ok", "open /dev/other rw": "ok",
            "open /dev/null rw": "ok"})

    def test_device_cgroup_allows_linux_devices(self):
        # Without rules, a node the config lists is usable (Keel allows linux.devices; runc
        # allows only what the rules and its defaults do), and one it does not list is not.
        def edit(b):
            b.config["linux"]["devices"] = [
                {"path": "/dev/fuse", "type": "c", "major": 10, "minor": 229, "fileMode": 0o666}]
        got = self.device_steps(["open /dev/fuse rw", "mknod /dev/loop-control c 10 237",
                                 "open /dev/loop-control r"], edit=edit)
        listed = "errno=EPERM" if keeltest.testing_runc() else "ok"
        self.assertEqual(got, {"open /dev/fuse rw": listed, "mknod /dev/loop-control c 10 237": "ok",
                               "open /dev/loop-control r": "errno=EPERM"})

    def test_device_program_fd_is_not_kept(self):
        # The attachment holds the program; neither the runtime (here `run`, waiting for the
        # container) nor the container keeps a descriptor of it.
        bundle = self.bundle("/bin/probe", "sleep", "30")
        cid = self.new_id()
        run = subprocess.Popen(self.runtime.argv("run", "--bundle", bundle.path, cid),
                               stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL)
        try:
            def running():
                r = self.runtime("state", cid)
                return r.returncode == 0 and '"running"' in r.stdout
            self.assertTrue(keeltest.wait_for(running), "never running")
            pid = self.runtime.state(cid)["pid"]
            for holder in [run.pid, pid]:
                fds = os.listdir(f"/proc/{holder}/fd")
                links = [os.readlink(f"/proc/{holder}/fd/{fd}") for fd in fds]
                self.assertFalse([t for t in links if "bpf" in t], f"{holder}: {links}")
        finally:
            self.runtime("kill", cid, "KILL")
            try:
                run.wait(timeout=20)
            except subprocess.TimeoutExpired:
                run.kill()
                run.wait()
        self.assertNothingLeft(cid)

    # --- user namespace ---------------------------------------------------------------------

    @staticmethod
    def userns(bundle):
        bundle.add_namespace("user")
        bundle.config["linux"]["uidMappings"] = [
            {"containerID": 0, "hostID": 100000, "size": 65536}]
        bundle.config["linux"]["gidMappings"] = [
            {"containerID": 0, "hostID": 100000, "size": 65536}]

    def test_user_namespace_maps(self):
        ids = self.probe("ids", edit=self.userns)
        self.assertEqual(parse_kv(ids)["uid"], "0")
        self.assertEqual(parse_kv_all(ids, "uid_map"), ["0 100000 65536"])
        self.assertEqual(parse_kv_all(ids, "gid_map"), ["0 100000 65536"])

    def test_user_namespace_root_is_unprivileged_on_host(self):
        bundle = self.bundle("/bin/probe", "sleep", "30")
        self.userns(bundle)
        bundle.save()
        cid = self.new_id()
        r = self.runtime.create(bundle, cid)
        self.assertEqual(r.returncode, 0, repr(r))
        pid = self.runtime.state(cid)["pid"]
        r = self.runtime("start", cid)
        self.assertEqual(r.returncode, 0, repr(r))
        uid = keeltest.wait_for(
            lambda: (keeltest.proc_status_field(pid, "Uid") or ["0"])[0] != "0"
            and keeltest.proc_status_field(pid, "Uid"), timeout=5)
        self.assertEqual(uid, ["100000"] * 4)
        self.assertEqual(keeltest.proc_status_field(pid, "Gid"), ["100000"] * 4)
        self.runtime("kill", cid, "KILL")
        self.assertTrue(keeltest.wait_for(lambda: not keeltest.process_exists(pid)))
        r = self.runtime("delete", cid)
        self.assertEqual(r.returncode, 0, repr(r))
        self.assertNothingLeft(cid)


if __name__ == "__main__":
    import unittest
    unittest.main(verbosity=2)
