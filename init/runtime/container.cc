// The ordered chain. The parent compiles the seccomp program, creates the cgroup and clones
// the child straight into it with its new namespaces; it writes the id maps and releases the
// child. The child then applies every subsystem's child side, top to bottom in child_main(),
// and reports the first failure as {stage, errno, detail} over a close-on-exec socket: EOF on
// that socket means exec succeeded.
#include "runtime/container.h"

#include <fcntl.h>
#include <linux/capability.h>
#include <linux/magic.h>
#include <linux/openat2.h>
#include <linux/sched.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/sendfile.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <sys/statvfs.h>
#include <sys/syscall.h>
#include <sys/sysmacros.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <climits>
#include <cstdio>
#include <cstring>

#include <fmt/format.h>

#include "common/signals.h"
#include "common/strings.h"
#include "runtime/capabilities.h"
#include "runtime/cgroup.h"
#include "runtime/device_filter.h"
#include "runtime/namespaces.h"
#include "runtime/process.h"
#include "runtime/rootfs.h"
#include "runtime/seccomp.h"
#include "runtime/sysctl.h"

extern char** environ;

namespace keel::runtime {

std::string ExitStatus::describe() const {
    if (signal) {
        return fmt::format("killed by SIG{}{}", signal_name(signal), core ? " (core dumped)" : "");
    }
    return fmt::format("exited with {}", code);
}

std::string StartError::str() const {
    if (stage.empty()) return error.str();
    return stage + ": " + error.str();
}

namespace {

// What the child reports. A fixed layout: the child writes it with one send() and no
// allocation on the way out.
struct Report {
    enum Kind : int32_t { failed = 1, ready = 2, console = 3 };
    int32_t kind = 0;
    int32_t err = 0;
    char stage[32] = {};
    char detail[400] = {};
};

void copy_str(char* dst, size_t cap, const std::string& s) {
    size_t n = std::min(cap - 1, s.size());
    std::memcpy(dst, s.data(), n);
    dst[n] = '\0';
}

// Everything the child needs, prepared by the parent before clone.
struct ChildArgs {
    const ContainerSpec* spec = nullptr;
    const StartOptions* opts = nullptr;
    const seccomp::Program* seccomp = nullptr;
    int report_fd = -1;
    int sync_fd = -1; // read end: the parent writes one byte once the id maps are in place
    int stdio[3] = {-1, -1, -1};
    bool in_user_ns = false;
};

[[noreturn]] void child_fail(const ChildArgs& a, const char* stage, int err,
                             const std::string& detail) {
    Report r;
    r.kind = Report::failed;
    r.err = err;
    copy_str(r.stage, sizeof r.stage, stage);
    copy_str(r.detail, sizeof r.detail, detail);
    if (::send(a.report_fd, &r, sizeof r, MSG_NOSIGNAL) < 0) {
        // Nobody is listening any more (a created container whose runtime has exited):
        // the container's own stderr is the only place left to say why.
        std::string line = fmt::format("keel: {}: {}: {}\n", stage, detail, errno_name(err));
        ssize_t ignored = ::write(2, line.data(), line.size());
        (void)ignored;
    }
    ::_exit(err == ENOENT && std::strcmp(stage, "exec") == 0   ? 127
            : err == EACCES && std::strcmp(stage, "exec") == 0 ? 126
                                                               : 125);
}

#define CHILD_STEP(stage, status)                                                                  \
    do {                                                                                           \
        Status s_ = (status);                                                                      \
        if (!s_) child_fail(a, stage, s_.error().code, s_.error().message);                        \
    } while (0)
#define CHILD_ERRNO(stage, call, detail)                                                           \
    do {                                                                                           \
        if (int e_ = (call)) child_fail(a, stage, e_, detail);                                     \
    } while (0)

int reset_signals() noexcept {
    sigset_t none;
    sigemptyset(&none);
    if (::sigprocmask(SIG_SETMASK, &none, nullptr) < 0) return errno;
    struct sigaction dfl {};
    dfl.sa_handler = SIG_DFL;
    for (int sig = 1; sig < NSIG; ++sig)
        if (sig != SIGKILL && sig != SIGSTOP) ::sigaction(sig, &dfl, nullptr);
    return 0;
}

int become_userns_root() noexcept {
    if (::prctl(PR_SET_KEEPCAPS, 1, 0, 0, 0) < 0) return errno;
    if (::setresgid(0, 0, 0) < 0 || ::setresuid(0, 0, 0) < 0) return errno;
    if (::prctl(PR_SET_KEEPCAPS, 0, 0, 0, 0) < 0) return errno;
    return 0;
}

int set_hostname(const ContainerSpec& spec) noexcept {
    if (!spec.hostname.empty() && ::sethostname(spec.hostname.data(), spec.hostname.size()) < 0)
        return errno;
    if (!spec.domainname.empty() &&
        ::setdomainname(spec.domainname.data(), spec.domainname.size()) < 0)
        return errno;
    return 0;
}

int setup_terminal(const ContainerSpec& spec) noexcept {
    // A new session makes the pty on stdin the controlling terminal, so job control and
    // SIGHUP on hang-up work inside.
    if (!spec.terminal && !spec.console) return 0;
    if (::setsid() < 0) return errno;
    if (::ioctl(0, TIOCSCTTY, 0) < 0) return errno;
    return 0;
}

// spec.console: a pty of the container's own devpts; the master goes to the parent on the
// report socket, the slave (returned in *slave, owned by the process's user as runc does)
// becomes stdio. This runs with every privilege in a mount namespace the container may
// control (an exec): /dev/pts is reached without following a symlink or a magic link and
// must be a devpts, and its ptmx must be the ptmx device (5:2).
int open_console(const ChildArgs& a, int* slave) noexcept {
    Fd pts = open_at2(AT_FDCWD, "/dev/pts", O_PATH | O_DIRECTORY,
                      RESOLVE_NO_SYMLINKS | RESOLVE_NO_MAGICLINKS);
    if (!pts) return errno;
    struct statfs sf {};
    if (::fstatfs(pts.get(), &sf) < 0 || sf.f_type != DEVPTS_SUPER_MAGIC) return ENOTTY;
    Fd master =
        open_at2(pts.get(), "ptmx", O_RDWR | O_NOCTTY,
                 RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS | RESOLVE_NO_MAGICLINKS | RESOLVE_NO_XDEV);
    if (!master) return errno;
    struct stat st {};
    unsigned number = 0;
    int unlock = 0;
    if (::fstat(master.get(), &st) < 0 || !S_ISCHR(st.st_mode) || major(st.st_rdev) != 5 ||
        minor(st.st_rdev) != 2 || ::ioctl(master.get(), TIOCGPTN, &number) < 0)
        return ENOTTY;
    if (::ioctl(master.get(), TIOCSPTLCK, &unlock) < 0) return errno;
    // Through the master, without a path lookup in the container's /dev/pts.
    Fd s(static_cast<int>(::ioctl(master.get(), TIOCGPTPEER, O_RDWR | O_NOCTTY | O_CLOEXEC)));
    if (!s) return errno;
    // A program that opens its terminal again by name (su, screen, tmux) needs it to be its
    // user's. The ids are the container's; in a user namespace they are mapped ones.
    if (a.spec->uid != 0 && ::fchown(s.get(), a.spec->uid, a.spec->gid) < 0) return errno;
    Report r;
    r.kind = Report::console;
    if (send_with_fd(a.report_fd, &r, sizeof r, master.get()) < 0) return errno;
    *slave = s.release();
    return 0;
}

// /dev/console made a bind mount of the terminal. /dev is normally the tmpfs the runtime made
// for this container, but without one it is the image's: what is there is reached without a
// symlink (a link to a masked /proc file would unmask it: CVE-2025-52565) and the bind goes
// onto that very file, through its descriptor.
int bind_console(int slave) noexcept {
    Fd made(::open("/dev/console", O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600));
    if (!made && errno != EEXIST) return errno;
    Fd target = open_at2(AT_FDCWD, "/dev/console", O_PATH | O_NOFOLLOW,
                         RESOLVE_NO_SYMLINKS | RESOLVE_NO_MAGICLINKS);
    if (!target) return errno;
    struct stat st {};
    if (::fstat(target.get(), &st) < 0) return errno;
    if (!S_ISREG(st.st_mode) && !S_ISCHR(st.st_mode)) return ELOOP;
    char source[64], where[64];
    std::snprintf(source, sizeof source, "/proc/self/fd/%d", slave);
    std::snprintf(where, sizeof where, "/proc/self/fd/%d", target.get());
    if (::mount(source, where, nullptr, MS_BIND, nullptr) < 0) return errno;
    return 0;
}

// The child is a copy of the runtime and holds every descriptor the runtime had: the cgroup
// directory, other clients' sockets, state files. Any of them would hand the container a way
// onto the host (a working directory of /proc/self/fd/N: CVE-2024-21626), so everything but
// what the chain itself uses is closed before anything else happens.
int close_inherited(const ChildArgs& a) noexcept {
    std::vector<int> keep = {
        0, 1, 2, a.report_fd, a.sync_fd, a.opts->hold_fd, a.stdio[0], a.stdio[1], a.stdio[2]};
    keep.insert(keep.end(), a.spec->extra_fds.begin(), a.spec->extra_fds.end());
    std::sort(keep.begin(), keep.end());
    int from = 0;
    for (int fd : keep) {
        if (fd < from) continue;
        if (fd > from && ::syscall(SYS_close_range, unsigned(from), unsigned(fd - 1), 0) < 0)
            return errno;
        from = fd + 1;
    }
    if (::syscall(SYS_close_range, unsigned(from), ~0U, 0) < 0) return errno;
    return 0;
}

int hold_until_started(const ChildArgs& a) noexcept {
    if (a.opts->hold_fd < 0) return 0;
    // From here on the container must outlive the runtime that created it.
    if (::prctl(PR_SET_PDEATHSIG, 0, 0, 0, 0) < 0) return errno;
    Report r;
    r.kind = Report::ready;
    if (::send(a.report_fd, &r, sizeof r, MSG_NOSIGNAL) < 0) return errno;
    char byte;
    ssize_t n;
    do
        n = ::read(a.opts->hold_fd, &byte, 1);
    while (n < 0 && errno == EINTR);
    if (n < 0) return errno;
    if (n == 0) return ECANCELED;
    return 0;
}

[[noreturn]] void child_exec(const ChildArgs& a);

[[noreturn]] void child_main(const ChildArgs& a) {
    const ContainerSpec& spec = *a.spec;
    CHILD_ERRNO("close-inherited", close_inherited(a), "close_range");
    CHILD_ERRNO("reset-signals", reset_signals(), "signal mask");
    if (a.opts->die_with_parent && ::prctl(PR_SET_PDEATHSIG, SIGKILL, 0, 0, 0) < 0)
        child_fail(a, "set-pdeathsig", errno, "prctl");
    if (a.sync_fd >= 0) {
        char byte;
        if (::read(a.sync_fd, &byte, 1) != 1) child_fail(a, "wait-for-parent", EPIPE, "id maps");
        ::close(a.sync_fd);
    }
    CHILD_STEP("join-namespaces", ns::join_by_path(spec));
    // The child still has the host's ids, which mean nothing inside a user namespace (files it
    // creates there would fail with EOVERFLOW): become the namespace's root first.
    if (a.in_user_ns) CHILD_ERRNO("become-userns-root", become_userns_root(), "setresuid 0");
    CHILD_ERRNO("set-oom-score-adj", process::set_oom_score_adj(spec), "/proc/self/oom_score_adj");
    // A new mount namespace gets its root set up; a joined one (an exec) has it already.
    if (const Namespace* m = spec.find_namespace(NsType::mount); m && m->path.empty()) {
        CHILD_STEP("prepare-rootfs", rootfs::prepare(spec, a.in_user_ns));
        CHILD_STEP("pivot-root", rootfs::pivot(spec));
        CHILD_STEP("finish-rootfs", rootfs::finish(spec));
    }
    CHILD_ERRNO("set-hostname", set_hostname(spec), spec.hostname);
    CHILD_ERRNO("set-rlimits", process::set_rlimits(spec), "setrlimit");

    int keep[2] = {a.report_fd, a.opts->hold_fd};
    int stdio[3] = {a.stdio[0], a.stdio[1], a.stdio[2]};
    if (spec.console) {
        int slave = -1;
        CHILD_ERRNO("open-console", open_console(a, &slave),
                    "/dev/pts/ptmx (the container's devpts)");
        stdio[0] = stdio[1] = stdio[2] = slave;
        // The runtime spec's default device for a terminal: /dev/console is the pty, bound
        // there (in a new container only: an exec's belongs to the container's own terminal).
        if (const Namespace* m = spec.find_namespace(NsType::mount); m && m->path.empty())
            CHILD_ERRNO("bind-console", bind_console(slave), "/dev/console");
    }
    CHILD_ERRNO("set-stdio", process::install_fds(stdio, spec.extra_fds, keep, 2), "dup2");
    // The report socket and exec fifo may have moved out of the way of the target fds.
    ChildArgs moved = a;
    StartOptions opts = *a.opts;
    moved.report_fd = keep[0];
    opts.hold_fd = keep[1];
    moved.opts = &opts;
    child_exec(moved);
}

[[noreturn]] void child_exec(const ChildArgs& a) {
    const ContainerSpec& spec = *a.spec;
    CHILD_ERRNO("set-terminal", setup_terminal(spec), "controlling terminal");

    auto exe = process::find_executable(spec);
    if (!exe) child_fail(a, "exec", exe.error().code, exe.error().message);

    CHILD_ERRNO("drop-bounding", caps::drop_bounding(spec.caps), "PR_CAPBSET_DROP");
    CHILD_ERRNO("set-ids", process::set_ids(spec),
                fmt::format("uid {} gid {}", spec.uid, spec.gid));
    if (spec.umask) ::umask(*spec.umask);
    if (::chdir(spec.cwd.c_str()) < 0) child_fail(a, "chdir", errno, spec.cwd);
    // Inside the container's root, whatever the path went through (as runc checks).
    char cwd[PATH_MAX];
    if (!::getcwd(cwd, sizeof cwd) || cwd[0] != '/')
        child_fail(a, "chdir", EPERM, spec.cwd + ": outside the container's root");
    // The seccomp filter is the container's, not the runtime's: it comes last, with nothing
    // but execve after it, so a profile need not allow what the chain does on the way
    // (close_range, getcwd, reading the exec fifo). Without no_new_privs installing it takes
    // CAP_SYS_ADMIN, held until then (exec drops it: see caps::apply).
    bool hold_admin = a.seccomp && !spec.no_new_privileges;
    CHILD_ERRNO("set-capabilities", caps::apply(spec.caps, hold_admin ? CAP_SYS_ADMIN : -1),
                "capset");
    if (spec.no_new_privileges && ::prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) < 0)
        child_fail(a, "no-new-privileges", errno, "prctl");
    CHILD_ERRNO("close-fds", process::close_others(spec.extra_fds.size()), "close_range");
    CHILD_ERRNO("wait-for-start", hold_until_started(a), "exec fifo");

    std::vector<char*> argv, envp;
    for (const auto& s : spec.args)
        argv.push_back(const_cast<char*>(s.c_str()));
    argv.push_back(nullptr);
    for (const auto& s : spec.env)
        envp.push_back(const_cast<char*>(s.c_str()));
    envp.push_back(nullptr);
    if (a.seccomp) CHILD_ERRNO("seccomp", seccomp::install(*a.seccomp), "install filter");
    ::execve(exe->c_str(), argv.data(), envp.data());
    child_fail(a, "exec", errno, *exe);
}

pid_t clone3_into(uint64_t flags, int cgroup_fd, int* pidfd) {
    clone_args ca{};
    ca.flags = flags | CLONE_PIDFD;
    ca.pidfd = reinterpret_cast<uint64_t>(pidfd);
    ca.exit_signal = SIGCHLD;
    if (cgroup_fd >= 0) {
        ca.flags |= CLONE_INTO_CGROUP;
        ca.cgroup = static_cast<uint64_t>(cgroup_fd);
    }
    return static_cast<pid_t>(::syscall(SYS_clone3, &ca, sizeof ca));
}

Result<int> open_stdio(const Stdio& s, int which) {
    switch (s.kind) {
    case Stdio::Kind::inherit:
        return which;
    case Stdio::Kind::fd:
        return s.fd;
    case Stdio::Kind::null: {
        int fd = ::open("/dev/null", (which == 0 ? O_RDONLY : O_WRONLY) | O_CLOEXEC);
        if (fd < 0) return sys_error("open /dev/null");
        return fd;
    }
    case Stdio::Kind::file: {
        int flags = which == 0 ? O_RDONLY : O_WRONLY | O_CREAT | O_APPEND;
        int fd = ::open(s.path.c_str(), flags | O_CLOEXEC | O_NOCTTY, 0640);
        if (fd < 0) return sys_error("open " + s.path);
        return fd;
    }
    }
    return plain_error("bad stdio kind");
}

// Host uid of the container's root: the owner a delegated cgroup gets.
uid_t host_id_of_root(const std::vector<IdMap>& maps, uid_t fallback) {
    for (const auto& m : maps)
        if (m.inside == 0 && m.count > 0) return m.outside;
    return fallback;
}

} // namespace

bool in_child_user_namespace() {
    static const bool nested = [] {
        std::string map;
        if (!read_file("/proc/self/uid_map", map)) return false;
        auto words = split(std::string(trim(map)), ' ');
        std::vector<std::string> w;
        for (auto& x : words)
            if (!x.empty()) w.push_back(x);
        return !(w.size() == 3 && w[0] == "0" && w[1] == "0" && w[2] == "4294967295");
    }();
    return nested;
}

Result<Container> Container::start(const ContainerSpec& spec, const StartOptions& opts,
                                   StartError* why) {
    auto pending = spawn(spec, opts, why);
    if (!pending) return pending.error();
    return pending->finish(why);
}

Result<PendingStart> Container::spawn(const ContainerSpec& spec, const StartOptions& opts,
                                      StartError* why) {
    StartError local;
    StartError& err = why ? *why : local;
    auto fail = [&](std::string stage, Error e) -> Error {
        err.stage = std::move(stage);
        err.error = e;
        return wrap(err.stage, std::move(e));
    };
    if (spec.args.empty()) return fail("spec", plain_error("process.args is empty"));
    // Here, not in the child: a namespace joined by path is compared with the runtime's own
    // while both are still named in the host's /proc.
    for (const auto& [key, value] : spec.sysctl)
        if (auto no = sysctl::refusal(key, spec))
            return fail("sysctl", plain_error("sysctl " + key + ": " + *no));
    const Namespace* mntns = spec.find_namespace(NsType::mount);
    if (mntns && mntns->path.empty() && spec.rootfs.empty())
        return fail("spec", plain_error("no rootfs"));

    std::optional<seccomp::Program> prog;
    if (spec.seccomp) {
        auto p = seccomp::compile_cached(*spec.seccomp);
        if (!p) return fail("seccomp", p.error());
        prog = std::move(*p);
    }

    // The cgroup exists, with its limits, before the child does.
    cgroup::Cgroup cg;
    bool own_cgroup = spec.cgroup_join.empty();
    // A container of its own is never without its device cgroup where this runtime can set one.
    bool devices = own_cgroup && device_filter::enforced_here();
    bool need_cgroup =
        spec.resources.any() || spec.cgroup_delegate || !spec.cgroup_path.empty() || devices;
    if (!own_cgroup) {
        // An exec: into the container's cgroup, which stays when this process is gone.
        auto c = cgroup::open_existing(spec.cgroup_join);
        if (!c) return fail("cgroup", c.error());
        cg = std::move(*c);
    } else if (!cgroup::mountpoint().empty() || need_cgroup) {
        std::string rel = spec.cgroup_path.empty() ? "keel/" + spec.id : spec.cgroup_path;
        auto c = cgroup::create(rel, spec.resources);
        if (c) {
            cg = std::move(*c);
        } else if (need_cgroup) {
            return fail("cgroup", c.error());
        }
        // Without limits or a device cgroup to enforce (a runtime in a user namespace), a
        // cgroup we cannot create (a read-only cgroupfs inside a container) is not worth
        // failing the start for: the container runs in ours.
    }
    auto drop_cgroup = [&] {
        if (own_cgroup) (void)cgroup::destroy(cg.path());
    };
    if (cg.valid() && spec.cgroup_delegate) {
        uid_t u = host_id_of_root(spec.uid_maps, 0);
        gid_t g = host_id_of_root(spec.gid_maps, 0);
        if (auto s = cg.delegate_to(u, g); !s) {
            drop_cgroup();
            return fail("cgroup", s.error());
        }
    }

    if (devices) {
        Status s = cg.valid()
                       ? device_filter::attach(cg.dir_fd(), device_filter::effective_rules(spec))
                       : plain_error("the device cgroup needs cgroup v2, which is not mounted");
        if (!s) {
            drop_cgroup();
            return fail("device-cgroup", s.error());
        }
    }

    Fd owned_stdio[3];
    ChildArgs args;
    args.spec = &spec;
    args.opts = &opts;
    args.seccomp = prog ? &*prog : nullptr;
    const Stdio* stdio_spec[3] = {&spec.stdin_, &spec.stdout_, &spec.stderr_};
    for (int i = 0; i < 3; ++i) {
        auto fd = open_stdio(*stdio_spec[i], i);
        if (!fd) {
            drop_cgroup();
            return fail("stdio", fd.error());
        }
        args.stdio[i] = *fd;
        if (stdio_spec[i]->kind == Stdio::Kind::null || stdio_spec[i]->kind == Stdio::Kind::file)
            owned_stdio[i].reset(*fd);
    }

    int sp[2];
    if (::socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sp) < 0) {
        drop_cgroup();
        return fail("setup", sys_error("socketpair"));
    }
    Fd report_rd(sp[0]), report_wr(sp[1]);
    args.report_fd = report_wr.get();

    const Namespace* userns = spec.find_namespace(NsType::user);
    bool new_userns = userns && userns->path.empty();
    // A runtime that itself runs in a user namespace (the user runtime, nested in its
    // service) makes its containers there too: device nodes are bound, not made, and the
    // kernel filesystems it may not mount are bound from its own view.
    args.in_user_ns = userns != nullptr || in_child_user_namespace();
    Fd sync_rd, sync_wr;
    if (new_userns) {
        int p[2];
        if (::pipe2(p, O_CLOEXEC) < 0) {
            drop_cgroup();
            return fail("setup", sys_error("pipe"));
        }
        sync_rd.reset(p[0]);
        sync_wr.reset(p[1]);
        args.sync_fd = sync_rd.get();
    }

    int pidfd = -1;
    pid_t pid;
    {
        auto guard = ns::enter_for_children(spec);
        if (!guard) {
            drop_cgroup();
            return fail("join-namespaces", guard.error());
        }
        // The child is not dumpable from its first instruction until its exec (which sets
        // dumpability for the new program as usual), as runc's init: until it has pivoted its
        // root and cwd are the host's, and a container sharing its PID namespace must not
        // reach them, nor its memory, through /proc/PID (CVE-2016-9962). Dumpability is the
        // mm's and a clone copies it: cleared here around the clone, then restored.
        int was_dumpable = ::prctl(PR_GET_DUMPABLE, 0, 0, 0, 0);
        if (::prctl(PR_SET_DUMPABLE, 0, 0, 0, 0) < 0) {
            drop_cgroup();
            return fail("setup", sys_error("prctl PR_SET_DUMPABLE 0"));
        }
        pid = clone3_into(static_cast<uint64_t>(ns::clone_flags(spec)),
                          cg.valid() ? cg.dir_fd() : -1, &pidfd);
        if (pid == 0) child_main(args);
        int e = errno;
        if (was_dumpable > 0) (void)::prctl(PR_SET_DUMPABLE, was_dumpable, 0, 0, 0);
        errno = e;
    }
    if (pid < 0) {
        int e = errno;
        drop_cgroup();
        return fail("clone",
                    sys_error(fmt::format("clone3 flags {:#x}", ns::clone_flags(spec)), e));
    }

    Container c;
    c.pid_ = pid;
    c.pidfd_.reset(pidfd);
    c.cgroup_ = own_cgroup ? cg.path() : "";
    report_wr.reset();
    sync_rd.reset();
    auto abort_child = [&](std::string stage, Error e) -> Error {
        ::kill(pid, SIGKILL);
        (void)c.wait();
        drop_cgroup();
        return fail(std::move(stage), std::move(e));
    };

    if (new_userns) {
        if (auto s = ns::write_id_maps(pid, spec); !s)
            return abort_child("write-id-maps", s.error());
        if (::write(sync_wr.get(), "1", 1) != 1)
            return abort_child("setup", sys_error("release child"));
        sync_wr.reset();
    }

    if (spec.console) {
        // The child's first report is its terminal (or why it has none), once its root is
        // set up: bounded, so a child stuck on the way (a hung mount source) does not hold
        // up the caller's event loop for good.
        Report r;
        std::vector<Fd> fds;
        ssize_t n = -1;
        pollfd pf{report_rd.get(), POLLIN, 0};
        int ready;
        do
            ready = ::poll(&pf, 1, 10000);
        while (ready < 0 && errno == EINTR);
        if (ready == 0)
            return abort_child("open-console",
                               plain_error("no terminal from the container in 10 s"));
        do
            n = recv_with_fds(report_rd.get(), &r, sizeof r, fds, 1);
        while (n < 0 && errno == EINTR);
        if (n == ssize_t(sizeof r) && r.kind == Report::console && fds.size() == 1) {
            c.console_ = std::move(fds[0]);
        } else if (n == ssize_t(sizeof r) && r.kind == Report::failed) {
            r.stage[sizeof r.stage - 1] = r.detail[sizeof r.detail - 1] = '\0';
            return abort_child(r.stage, sys_error(r.detail, r.err));
        } else {
            return abort_child("open-console", plain_error("the container sent no terminal"));
        }
    }

    PendingStart p;
    p.c_ = std::move(c);
    p.report_ = std::move(report_rd);
    return p;
}

Result<Container> PendingStart::finish(StartError* why) {
    StartError local;
    StartError& err = why ? *why : local;
    auto fail = [&](std::string stage, Error e) -> Error {
        // The child exits after its report, but a process that shares its PID namespace (an
        // exec's workload) may stop it first: the wait must not depend on it.
        (void)c_.signal(SIGKILL);
        (void)c_.wait();
        if (!c_.cgroup_.empty()) (void)cgroup::destroy(c_.cgroup_);
        err.stage = std::move(stage);
        err.error = e;
        return wrap(err.stage, std::move(e));
    };
    Report r;
    ssize_t n;
    do
        n = ::recv(report_.get(), &r, sizeof r, 0);
    while (n < 0 && errno == EINTR);
    if (n < 0) {
        int e = errno;
        ::kill(c_.pid(), SIGKILL);
        return fail("setup", sys_error("read child report", e));
    }
    report_.reset();
    if (n == 0 || r.kind == Report::ready) return std::move(c_); // EOF: exec succeeded
    r.stage[sizeof r.stage - 1] = r.detail[sizeof r.detail - 1] = '\0';
    return fail(r.stage, sys_error(r.detail, r.err));
}

Status Container::signal(int sig) const {
    if (reaped_) return sys_error(fmt::format("signal {}", pid_), ESRCH);
    if (::syscall(SYS_pidfd_send_signal, pidfd_.get(), sig, nullptr, 0) < 0)
        return sys_error(fmt::format("signal container process {}", pid_));
    return {};
}

static ExitStatus from_siginfo(const siginfo_t& si) {
    ExitStatus st;
    if (si.si_code == CLD_EXITED) {
        st.code = si.si_status;
    } else {
        st.signal = si.si_status;
        st.core = si.si_code == CLD_DUMPED;
    }
    return st;
}

Result<ExitStatus> Container::wait() {
    if (reaped_) return plain_error("container already reaped");
    siginfo_t si{};
    while (::waitid(P_PIDFD, static_cast<id_t>(pidfd_.get()), &si, WEXITED) < 0)
        if (errno != EINTR) return sys_error(fmt::format("wait for {}", pid_));
    reaped_ = true;
    return from_siginfo(si);
}

std::optional<ExitStatus> Container::try_wait() {
    if (reaped_) return std::nullopt;
    siginfo_t si{};
    if (::waitid(P_PIDFD, static_cast<id_t>(pidfd_.get()), &si, WEXITED | WNOHANG) < 0 ||
        si.si_pid == 0)
        return std::nullopt;
    reaped_ = true;
    return from_siginfo(si);
}

Result<ExitStatus> Container::stop(int sig, std::chrono::milliseconds timeout) {
    if (auto done = try_wait()) return *done;
    (void)signal(sig);
    pollfd p{pidfd_.get(), POLLIN, 0};
    int r;
    do
        r = ::poll(&p, 1, static_cast<int>(timeout.count()));
    while (r < 0 && errno == EINTR);
    if (r == 0) (void)signal(SIGKILL);
    return wait();
}

Status Container::cleanup() {
    return cgroup::destroy(cgroup_);
}

void Container::detach() {
    pidfd_.reset();
    reaped_ = true;
}

bool running_from_sealed_memfd() {
    Fd exe(::open("/proc/self/exe", O_RDONLY | O_CLOEXEC));
    if (!exe) return false;
    int seals = ::fcntl(exe.get(), F_GET_SEALS);
    return seals >= 0 && (seals & (F_SEAL_WRITE | F_SEAL_FUTURE_WRITE)) && (seals & F_SEAL_SEAL);
}

bool running_from_read_only_mount() {
    Fd exe(::open("/proc/self/exe", O_RDONLY | O_CLOEXEC));
    struct statvfs sv {};
    // ST_RDONLY: the mount's flag (a read-only bind) or the filesystem's.
    return exe && ::fstatvfs(exe.get(), &sv) == 0 && (sv.f_flag & ST_RDONLY);
}

Status reexec_from_sealed_memfd(char** argv) {
    if (running_from_sealed_memfd() || running_from_read_only_mount()) return {};
    Fd exe(::open("/proc/self/exe", O_RDONLY | O_CLOEXEC));
    if (!exe) return sys_error("open /proc/self/exe");
    Fd mem(::memfd_create("keel", MFD_CLOEXEC | MFD_ALLOW_SEALING));
    if (!mem) return sys_error("memfd_create");
    struct stat st {};
    if (::fstat(exe.get(), &st) < 0) return sys_error("stat /proc/self/exe");
    for (off_t done = 0; done < st.st_size;) {
        ssize_t n =
            ::sendfile(mem.get(), exe.get(), nullptr, static_cast<size_t>(st.st_size - done));
        if (n < 0) {
            if (errno == EINTR) continue;
            return sys_error("copy runtime binary to memfd");
        }
        if (n == 0) break;
        done += n;
    }
    // F_SEAL_WRITE waits a little for every page of the copy to be unreferenced beyond its
    // mappings and fails with EBUSY if one is not (seen once in about 600 runs of
    // scripts/bench-start on a loaded machine). There is no mapping of this memfd at all, so
    // F_SEAL_FUTURE_WRITE (every write from now on fails) seals it as well: the fallback.
    constexpr int kSeals = F_SEAL_SEAL | F_SEAL_SHRINK | F_SEAL_GROW;
    if (::fcntl(mem.get(), F_ADD_SEALS, kSeals | F_SEAL_WRITE) < 0 &&
        (errno != EBUSY || ::fcntl(mem.get(), F_ADD_SEALS, kSeals | F_SEAL_FUTURE_WRITE) < 0))
        return sys_error("seal memfd");
    ::fexecve(mem.get(), argv, environ);
    return sys_error("re-exec from sealed memfd");
}

} // namespace keel::runtime
