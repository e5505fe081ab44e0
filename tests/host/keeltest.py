"""Helpers for Keel's host tests: real containers on this machine, run as root.

Each tests/host/test_*.py is registered by tests/CMakeLists.txt as one ctest test and run as a
plain script with KEEL_BIN (the static multi-call `keel`), KEEL_PROBE (the static keel-probe)
and KEEL_SOURCE_DIR in the environment.

What this module gives a test:

* build_rootfs(): a busybox rootfs with the probe at /bin/probe;
* Bundle: an OCI bundle from `keel runtime spec` (or `runc spec`), config.json as a dict;
* Runtime: `keel runtime --root <private state dir> ...`, stdout/stderr/exit code captured;
* ContainerTestCase: a unittest base that hands out unique container ids and, after every
  test, force-deletes what is left and asserts nothing stayed behind (state dir, cgroup,
  mount, container process) — see assert_nothing_left().

KEEL_TEST_RUNTIME=runc runs the same tests against Debian's runc, to tell a wrong test from a
runtime bug; Keel-only expectations (exit code 125, error wording) then fail by design.
"""

import json
import os
import re
import secrets
import shutil
import signal
import subprocess
import tempfile
import time
import unittest

# Applets linked into every test rootfs: a shell and the tools a test might script with.
BUSYBOX_APPLETS = [
    "sh", "true", "false", "cat", "echo", "ls", "sleep", "mount", "umount", "id", "hostname",
    "env", "ps", "kill", "mkdir", "rm", "touch", "test", "[", "grep", "head", "wc", "stat",
    "readlink", "pwd", "uname", "tty", "stty",
]

CAP_NUMBERS = {
    "CAP_CHOWN": 0, "CAP_DAC_OVERRIDE": 1, "CAP_DAC_READ_SEARCH": 2, "CAP_FOWNER": 3,
    "CAP_FSETID": 4, "CAP_KILL": 5, "CAP_SETGID": 6, "CAP_SETUID": 7, "CAP_SETPCAP": 8,
    "CAP_LINUX_IMMUTABLE": 9, "CAP_NET_BIND_SERVICE": 10, "CAP_NET_BROADCAST": 11,
    "CAP_NET_ADMIN": 12, "CAP_NET_RAW": 13, "CAP_IPC_LOCK": 14, "CAP_IPC_OWNER": 15,
    "CAP_SYS_MODULE": 16, "CAP_SYS_RAWIO": 17, "CAP_SYS_CHROOT": 18, "CAP_SYS_PTRACE": 19,
    "CAP_SYS_PACCT": 20, "CAP_SYS_ADMIN": 21, "CAP_SYS_BOOT": 22, "CAP_SYS_NICE": 23,
    "CAP_SYS_RESOURCE": 24, "CAP_SYS_TIME": 25, "CAP_SYS_TTY_CONFIG": 26, "CAP_MKNOD": 27,
    "CAP_LEASE": 28, "CAP_AUDIT_WRITE": 29, "CAP_AUDIT_CONTROL": 30, "CAP_SETFCAP": 31,
    "CAP_MAC_OVERRIDE": 32, "CAP_MAC_ADMIN": 33, "CAP_SYSLOG": 34, "CAP_WAKE_ALARM": 35,
    "CAP_BLOCK_SUSPEND": 36, "CAP_AUDIT_READ": 37, "CAP_PERFMON": 38, "CAP_BPF": 39,
    "CAP_CHECKPOINT_RESTORE": 40,
}

# What `runc spec` (and so `keel runtime spec`) grants.
DEFAULT_CAPS = ["CAP_AUDIT_WRITE", "CAP_KILL", "CAP_NET_BIND_SERVICE"]

CGROUP_ROOT = "/sys/fs/cgroup"


def cap_mask(names):
    """The /proc/<pid>/status bit mask of capability names, as an int."""
    mask = 0
    for name in names:
        mask |= 1 << CAP_NUMBERS[name]
    return mask


def _required_env(name):
    value = os.environ.get(name)
    if not value:
        raise RuntimeError(f"{name} is not set: run the host tests through ctest")
    return value


def keel_bin():
    return _required_env("KEEL_BIN")


def probe_bin():
    return _required_env("KEEL_PROBE")


def runtime_command():
    """The argv prefix of the runtime under test."""
    if os.environ.get("KEEL_TEST_RUNTIME") == "runc":
        return ["runc"]
    return [keel_bin(), "runtime"]


def testing_runc():
    return os.environ.get("KEEL_TEST_RUNTIME") == "runc"


# ---------------------------------------------------------------------------------------------
# Output parsing


def parse_kv(text):
    """`key=value` lines -> {key: value}; a key seen twice keeps the last value."""
    out = {}
    for line in text.splitlines():
        key, sep, value = line.partition("=")
        if sep:
            out[key] = value
    return out


def parse_kv_all(text, key):
    """Every value of `key` in `key=value` lines, in order (uid_map has one line per range)."""
    return [line.partition("=")[2] for line in text.splitlines() if line.partition("=")[0] == key]


def mountinfo_entries(text):
    """/proc/<pid>/mountinfo text -> list of dicts (id, parent, dev, root, mountpoint,
    options, fstype, source, super_options)."""
    entries = []
    for line in text.splitlines():
        left, _, right = line.partition(" - ")
        fields = left.split()
        rfields = right.split()
        if len(fields) < 6 or len(rfields) < 2:
            continue
        entries.append({
            "id": fields[0], "parent": fields[1], "dev": fields[2],
            "root": _unescape_mount(fields[3]), "mountpoint": _unescape_mount(fields[4]),
            "options": fields[5].split(","), "fstype": rfields[0],
            "source": rfields[1], "super_options": rfields[2].split(",") if len(rfields) > 2 else [],
        })
    return entries


def _unescape_mount(field):
    return re.sub(r"\\([0-7]{3})", lambda m: chr(int(m.group(1), 8)), field)


# ---------------------------------------------------------------------------------------------
# Rootfs and bundles


def build_rootfs(path):
    """A minimal busybox root filesystem at `path` with the probe at /bin/probe."""
    busybox = shutil.which("busybox", path="/bin:/usr/bin") or "/bin/busybox"
    for d in ["bin", "proc", "sys", "dev", "tmp", "etc", "root", "var", "run"]:
        os.makedirs(os.path.join(path, d), exist_ok=True)
    os.chmod(os.path.join(path, "tmp"), 0o1777)
    shutil.copy(busybox, os.path.join(path, "bin", "busybox"))
    shutil.copy(probe_bin(), os.path.join(path, "bin", "probe"))
    os.chmod(os.path.join(path, "bin", "busybox"), 0o755)
    os.chmod(os.path.join(path, "bin", "probe"), 0o755)
    for applet in BUSYBOX_APPLETS:
        os.symlink("busybox", os.path.join(path, "bin", applet))
    with open(os.path.join(path, "etc", "passwd"), "w") as f:
        f.write("root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/:/bin/false\n")
    with open(os.path.join(path, "etc", "group"), "w") as f:
        f.write("root:x:0:\ntty:x:5:\nnogroup:x:65534:\n")
    with open(os.path.join(path, "etc", "hostname"), "w") as f:
        f.write("rootfs\n")
    return path


class Bundle:
    """An OCI bundle: <path>/config.json and <path>/rootfs.

    The config comes from the runtime's own `spec` (generator="runtime") or from `runc spec`
    (generator="runc"); only process.terminal and process.args are changed here. Tests edit
    `self.config` and call save() before running.
    """

    def __init__(self, path, args=None, generator="runtime"):
        self.path = path
        os.makedirs(path)
        self.rootfs = build_rootfs(os.path.join(path, "rootfs"))
        if generator == "runc":
            cmd = ["runc", "spec"]
        else:
            cmd = runtime_command() + ["spec"]
        proc = subprocess.run(cmd, cwd=path, stdin=subprocess.DEVNULL, capture_output=True,
                              text=True, timeout=30)
        if proc.returncode != 0 or not os.path.exists(self.config_path):
            raise AssertionError(f"{' '.join(cmd)} in {path} failed (exit {proc.returncode}): "
                                 f"{proc.stderr.strip()}")
        with open(self.config_path) as f:
            self.config = json.load(f)
        self.config["process"]["terminal"] = False
        self.config["process"]["args"] = list(args) if args else ["/bin/probe", "pid"]
        self.save()

    @property
    def config_path(self):
        return os.path.join(self.path, "config.json")

    def save(self):
        with open(self.config_path, "w") as f:
            json.dump(self.config, f, indent=2)

    # Small editors for what tests change most often.

    def set_args(self, *args):
        self.config["process"]["args"] = list(args)
        self.save()

    def set_capabilities(self, bounding, effective=None, permitted=None, inheritable=None,
                         ambient=None):
        caps = {"bounding": list(bounding),
                "effective": list(effective if effective is not None else bounding),
                "permitted": list(permitted if permitted is not None else bounding)}
        if inheritable is not None:
            caps["inheritable"] = list(inheritable)
        if ambient is not None:
            caps["ambient"] = list(ambient)
        self.config["process"]["capabilities"] = caps
        self.save()

    def namespaces(self):
        return [ns["type"] for ns in self.config["linux"]["namespaces"]]

    def add_namespace(self, ns_type, path=None):
        entry = {"type": ns_type}
        if path:
            entry["path"] = path
        self.config["linux"]["namespaces"].append(entry)
        self.save()

    def remove_namespace(self, ns_type):
        self.config["linux"]["namespaces"] = [
            ns for ns in self.config["linux"]["namespaces"] if ns["type"] != ns_type]
        self.save()


# ---------------------------------------------------------------------------------------------
# Running the runtime


class Result:
    def __init__(self, argv, returncode, stdout, stderr):
        self.argv = argv
        self.returncode = returncode
        self.stdout = stdout
        self.stderr = stderr

    def __repr__(self):
        return (f"<{' '.join(self.argv)}: exit {self.returncode}\n--- stdout\n{self.stdout}"
                f"--- stderr\n{self.stderr}--->")


class Runtime:
    """`keel runtime --root <root> ...` with a private state directory."""

    def __init__(self, root, scratch):
        self.root = root
        self.scratch = scratch  # where stdout/stderr files go
        self._n = 0

    def argv(self, *args):
        return runtime_command() + ["--root", self.root] + [str(a) for a in args]

    def __call__(self, *args, cwd=None, timeout=30, pass_fds=()):
        """Runs the runtime and waits for it. stdout and stderr go to files, not pipes: a
        detached container inherits them, and a pipe would keep communicate() waiting until
        the container exits."""
        argv = self.argv(*args)
        self._n += 1
        out_path = os.path.join(self.scratch, f"out.{self._n}")
        err_path = os.path.join(self.scratch, f"err.{self._n}")
        with open(out_path, "w+") as out, open(err_path, "w+") as err:
            proc = subprocess.Popen(argv, cwd=cwd, stdin=subprocess.DEVNULL, stdout=out,
                                    stderr=err, pass_fds=pass_fds)
            try:
                rc = proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
                raise AssertionError(f"{' '.join(argv)} did not finish in {timeout}s")
        with open(out_path, errors="replace") as f:
            stdout = f.read()
        with open(err_path, errors="replace") as f:
            stderr = f.read()
        return Result(argv, rc, stdout, stderr)

    def run(self, bundle, cid, *extra, **kw):
        return self("run", "--bundle", bundle.path, *extra, cid, **kw)

    def create(self, bundle, cid, *extra, **kw):
        return self("create", "--bundle", bundle.path, *extra, cid, **kw)

    def state(self, cid):
        """The parsed OCI state of `cid`; raises AssertionError if `state` fails."""
        r = self("state", cid)
        if r.returncode != 0:
            raise AssertionError(f"state {cid} failed: {r!r}")
        try:
            return json.loads(r.stdout)
        except ValueError as e:
            raise AssertionError(f"state {cid} printed invalid JSON ({e}): {r!r}")

    def state_dir(self, cid):
        return os.path.join(self.root, cid)


def wait_for(predicate, timeout=5.0, interval=0.02):
    """Polls until predicate() is truthy; returns its last value."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value or time.monotonic() >= deadline:
            return value
        time.sleep(interval)


def process_exists(pid):
    """True while `pid` exists and is not a zombie."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            stat = f.read()
    except FileNotFoundError:
        return False
    return stat.rpartition(")")[2].split()[0] != "Z"


def proc_status_field(pid, key):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            k, _, v = line.partition(":")
            if k == key:
                return v.split()
    return None


# ---------------------------------------------------------------------------------------------
# Nothing left behind


def cgroup_dirs_named(needle):
    """Every directory under /sys/fs/cgroup (all hierarchies) whose name contains `needle`."""
    found = []
    for dirpath, dirnames, _ in os.walk(CGROUP_ROOT):
        for d in dirnames:
            if needle in d:
                found.append(os.path.join(dirpath, d))
    return found


def mounts_mentioning(needle, mountinfo="/proc/self/mountinfo"):
    try:
        with open(mountinfo) as f:
            return [line.rstrip("\n") for line in f if needle in _unescape_mount(line)]
    except OSError:  # the process exited, or is a kernel thread
        return []


def _mount_ns(pid):
    try:
        return os.stat(f"/proc/{pid}/ns/mnt").st_ino
    except OSError:
        return None


def processes_rooted_in(needle):
    """PIDs of live processes in another mount namespace whose root mount comes from a path
    containing `needle`: a container whose rootfs lives under a test's private temp dir shows
    that path as the root of its "/" mount. Matching only the "/" mount keeps unrelated
    namespaces that merely see a host mount from ever matching."""
    pids = []
    own_ns = _mount_ns("self")
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        ns = _mount_ns(entry)
        if ns is None or ns == own_ns:
            continue
        try:
            with open(f"/proc/{entry}/mountinfo") as f:
                mounts = mountinfo_entries(f.read())
        except OSError:  # gone, or a kernel thread
            continue
        if any(m["mountpoint"] == "/" and needle in m["root"] for m in mounts) \
                and process_exists(entry):
            pids.append(int(entry))
    return pids


def leftovers(cids, runtime, tag):
    """Everything finished containers `cids` left on the host. `tag` is a string unique to
    the test's temp dir (its basename), so it matches the bundle and rootfs paths; mounts and
    processes are matched by it, so call this when no container of the test should be alive.
    """
    problems = []
    for cid in cids:
        state_dir = runtime.state_dir(cid)
        if os.path.lexists(state_dir):
            problems.append(f"state dir {state_dir} still exists")
        for d in cgroup_dirs_named(cid):
            problems.append(f"cgroup {d} still exists")
    for line in mounts_mentioning(tag):
        problems.append(f"host mount left: {line}")
    # A killed process can take a moment to go away after `delete` returns.
    wait_for(lambda: not processes_rooted_in(tag), timeout=3)
    for pid in processes_rooted_in(tag):
        problems.append(f"container process {pid} still running")
    return problems


def assert_nothing_left(testcase, cid, runtime, tag):
    """No state dir or cgroup of `cid`, and no mount or live process under the test's dir."""
    problems = leftovers([cid], runtime, tag)
    testcase.assertEqual(problems, [], f"container {cid} left things behind")


def scrub(tag, cids):
    """Best-effort cleanup after a runtime failed to clean up: kill container processes,
    detach mounts under the test dir, remove cgroups named after the ids. Keeps one broken
    test from poisoning the next or the host."""
    for pid in processes_rooted_in(tag):
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    for pid in processes_rooted_in(tag):
        wait_for(lambda: not process_exists(pid), timeout=2)
    for _ in range(10):
        lines = mounts_mentioning(tag)
        if not lines:
            break
        # Deepest first.
        points = sorted({mountinfo_entries(l)[0]["mountpoint"] for l in lines},
                        key=len, reverse=True)
        for p in points:
            subprocess.run(["umount", "-l", p], stdout=subprocess.DEVNULL,
                           stderr=subprocess.DEVNULL)
    for cid in cids:
        for d in sorted(cgroup_dirs_named(cid), key=len, reverse=True):
            try:
                os.rmdir(d)
            except OSError:
                pass


# ---------------------------------------------------------------------------------------------
# Test base class


class ContainerTestCase(unittest.TestCase):
    """Per test: a private temp dir (bundles and the runtime's --root state dir live in it),
    unique container ids, and a teardown that force-deletes what is left and asserts the
    host is clean."""

    def setUp(self):
        if os.geteuid() != 0:
            self.fail("host tests run real containers and must run as root")
        self.tmp = tempfile.mkdtemp(prefix="keeltest-")
        # A user-namespaced container (root mapped to an unprivileged uid) must be able to
        # walk down to its rootfs.
        os.chmod(self.tmp, 0o755)
        self.tag = os.path.basename(self.tmp)
        self.runtime = Runtime(os.path.join(self.tmp, "state"), self.tmp)
        self.cids = []
        self._bundles = 0
        self.addCleanup(self._cleanup)

    def new_id(self, name="c"):
        cid = f"kt{secrets.token_hex(4)}-{name}"
        self.cids.append(cid)
        return cid

    def bundle(self, *args, generator="runtime"):
        self._bundles += 1
        return Bundle(os.path.join(self.tmp, f"bundle{self._bundles}"), args=args or None,
                      generator=generator)

    def run_container(self, bundle, *extra, name="c", **kw):
        """`run` a fresh container from `bundle` and assert it left nothing behind."""
        cid = self.new_id(name)
        r = self.runtime.run(bundle, cid, *extra, **kw)
        self.assertNothingLeft(cid, context=r)
        return r

    def assertNothingLeft(self, cid, context=None):
        problems = leftovers([cid], self.runtime, self.tag)
        msg = f"container {cid} left things behind"
        if context is not None:
            msg += f" after {context!r}"
        self.assertEqual(problems, [], msg)

    def _cleanup(self):
        for cid in self.cids:
            if os.path.lexists(self.runtime.state_dir(cid)):
                try:
                    self.runtime("delete", "--force", cid, timeout=20)
                except AssertionError:  # timed out: scrubbed below
                    pass
        problems = leftovers(self.cids, self.runtime, self.tag)
        if problems:
            scrub(self.tag, self.cids)
        still_mounted = mounts_mentioning(self.tag)
        if not still_mounted:
            shutil.rmtree(self.tmp, ignore_errors=True)
        # Never rmtree through a mount: it could be a bind mount of a host directory.
        self.assertEqual(problems, [], "containers left things behind at teardown")
        self.assertEqual(still_mounted, [], f"mounts under {self.tmp} survived scrubbing")
