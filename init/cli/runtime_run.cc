// `keel runtime create` and `run`: a bundle becomes a container. Both re-execute the runtime
// from a sealed memfd first (CVE-2019-5736), unless its binary is on a read-only mount, so
// what the container's process runs until its exec, and what /proc/PID/exe names, is a file
// nobody can write.
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <signal.h>
#include <stdlib.h>
#include <sys/signalfd.h>
#include <sys/stat.h>
#include <unistd.h>

#include <fmt/format.h>

#include "cli/options.h"
#include "cli/runtime_cmd.h"
#include "cli/terminal.h"
#include "runtime/container.h"
#include "runtime/oci.h"

namespace keel::cli {

using runtime::Container;
using runtime::ContainerSpec;
using runtime::state::ContainerState;

namespace {

VerbSpec create_verb(const char* name) {
    return runc_verb(name, {{"bundle", "b", true},
                            {"pid-file", "", true},
                            {"console-socket", "", true},
                            {"preserve-fds", "", true},
                            {"no-pivot"},
                            {"no-new-keyring"},
                            {"detach", "d"},
                            {"keep"}});
}

struct Prepared {
    std::string id;
    std::string bundle;
    ContainerSpec spec;
    Fd console; // process.terminal: the master of the terminal the container made
};

// Everything that can fail on bad input happens here, before the state directory exists, so a
// bad config.json leaves nothing behind.
Result<Prepared> prepare(const Options& a, const char* cmd, bool attach_terminal) {
    if (a.positional().size() != 1)
        return plain_error(fmt::format("{} needs exactly one container id", cmd));
    Prepared p;
    p.id = a.positional()[0];
    KEEL_TRY(runtime::state::check_id(p.id));
    if (a.flag("no-pivot"))
        return plain_error(
            "--no-pivot is not supported: keel always pivots (or moves the root on an initramfs)");
    char real[PATH_MAX];
    std::string bundle = a.value_or("bundle", ".");
    if (!::realpath(bundle.c_str(), real)) return sys_error("bundle " + bundle);
    p.bundle = real;
    auto spec = runtime::oci::load_bundle(p.bundle);
    if (!spec) return spec.error();
    p.spec = std::move(*spec);
    p.spec.id = p.id;
    if (auto n = a.value("preserve-fds")) {
        int count = std::atoi(n->c_str());
        if (count < 0 || count > 1000) return plain_error("--preserve-fds: invalid count " + *n);
        for (int fd = 3; fd < 3 + count; ++fd)
            p.spec.extra_fds.push_back(fd);
    }
    if (p.spec.terminal) {
        if (!attach_terminal && !a.value("console-socket"))
            return plain_error("process.terminal is true: --console-socket is required with " +
                               std::string(cmd));
        // Made inside the container, in its devpts, as runc does: `tty` there names it.
        p.spec.console = true;
    } else if (a.value("console-socket")) {
        return plain_error("--console-socket given but process.terminal is false");
    }
    return p;
}

int start_failure_code(const runtime::StartError& why) {
    if (why.stage == "exec" && why.error.code == ENOENT) return 127;
    if (why.stage == "exec" && why.error.code == EACCES) return 126;
    return 125;
}

Status write_pid_file(const Options& a, pid_t pid) {
    auto path = a.value("pid-file");
    if (!path) return {};
    // runc writes it atomically too: a reader never sees an empty file.
    if (!write_file_atomic(*path, std::to_string(pid), 0644, Durability::volatile_))
        return sys_error("write pid file " + *path);
    return {};
}

// Starts the container and records its state. On failure, nothing is left: no state dir, no
// cgroup, no process.
Result<Container> launch(RuntimeContext& ctx, Prepared& p, const Options& a, bool hold,
                         bool die_with_parent, runtime::StartError& why) {
    KEEL_TRY(ctx.store.create(p.id));
    auto undo = [&](Error e) -> Error {
        (void)ctx.store.remove(p.id);
        return e;
    };
    Fd fifo;
    runtime::StartOptions opts;
    opts.die_with_parent = die_with_parent;
    if (hold) {
        std::string path = ctx.store.fifo(p.id);
        if (::mkfifo(path.c_str(), 0600) < 0) return undo(sys_error("mkfifo " + path));
        // Read-write, so opening does not block for a writer; the container holds it as its
        // reader until `start` writes.
        fifo.reset(::open(path.c_str(), O_RDWR | O_CLOEXEC));
        if (!fifo) return undo(sys_error("open " + path));
        opts.hold_fd = fifo.get();
    }
    auto c = Container::start(p.spec, opts, &why);
    if (!c) return undo(c.error());
    if (p.spec.console) p.console = c->take_console();

    ContainerState st;
    st.id = p.id;
    st.pid = c->pid();
    st.starttime = runtime::state::process_starttime(c->pid());
    st.bundle = p.bundle;
    st.cgroup = c->cgroup_path();
    st.created = runtime::state::now_rfc3339();
    Status s = ctx.store.save(st);
    if (s) s = write_pid_file(a, c->pid());
    if (s && p.console && a.value("console-socket"))
        s = send_console(*a.value("console-socket"), p.console.get());
    if (!s) {
        (void)c->stop(SIGKILL, std::chrono::milliseconds(0));
        (void)c->cleanup();
        return undo(s.error());
    }
    return c;
}

// Foreground run: forwards signals to the container, proxies its terminal, and returns its
// exit status once it is gone.
int supervise(Container& c, Prepared& p, const sigset_t& forwarded) {
    Fd sigfd(::signalfd(-1, &forwarded, SFD_CLOEXEC | SFD_NONBLOCK));
    std::optional<RawMode> raw;
    if (p.console) {
        raw.emplace(0);
        copy_window_size(0, p.console.get());
    }
    bool stdin_open = bool(p.console);
    for (;;) {
        pollfd fds[4] = {
            {c.pidfd(), POLLIN, 0}, {sigfd.get(), POLLIN, 0}, {-1, POLLIN, 0}, {-1, POLLIN, 0}};
        if (p.console) {
            fds[2].fd = p.console.get();
            fds[3].fd = stdin_open ? 0 : -1;
        }
        if (::poll(fds, 4, -1) < 0 && errno != EINTR) break;
        if (fds[1].revents & POLLIN) {
            signalfd_siginfo si{};
            while (::read(sigfd.get(), &si, sizeof si) == sizeof si) {
                if (si.ssi_signo == SIGWINCH && p.console)
                    copy_window_size(0, p.console.get());
                else
                    (void)c.signal(static_cast<int>(si.ssi_signo));
            }
        }
        char buf[8192];
        if (fds[2].revents & (POLLIN | POLLHUP)) {
            ssize_t n = ::read(p.console.get(), buf, sizeof buf);
            if (n > 0) (void)!::write(1, buf, static_cast<size_t>(n));
        }
        if (fds[3].revents & (POLLIN | POLLHUP)) {
            ssize_t n = ::read(0, buf, sizeof buf);
            if (n <= 0)
                stdin_open = false;
            else
                (void)!::write(p.console.get(), buf, static_cast<size_t>(n));
        }
        if (fds[0].revents & POLLIN) break;
    }
    if (p.console) {
        // Drain what the container wrote before it exited.
        char buf[8192];
        ::fcntl(p.console.get(), F_SETFL, O_NONBLOCK);
        for (ssize_t n; (n = ::read(p.console.get(), buf, sizeof buf)) > 0;)
            (void)!::write(1, buf, static_cast<size_t>(n));
    }
    auto st = c.wait();
    if (!st) return fail(st.error().str(), 125);
    return st->shell_code();
}

} // namespace

int runtime_create(RuntimeContext& ctx, const std::vector<std::string>& argv) {
    auto a = Options::parse(create_verb("create"), argv);
    if (!a) return fail("create: " + a.error().str(), 125);
    if (a->flag("detach") || a->flag("keep"))
        return fail("create: --detach and --keep belong to run", 125);
    if (auto s = runtime::reexec_from_sealed_memfd(ctx.argv); !s) return fail(s.error().str(), 125);
    auto p = prepare(*a, "create", false);
    if (!p) return fail("create: " + p.error().str(), 125);
    runtime::StartError why;
    auto c = launch(ctx, *p, *a, true, true, why);
    if (!c)
        return fail(
            fmt::format("create {}: {}", p->id, why.stage.empty() ? c.error().str() : why.str()),
            start_failure_code(why));
    c->detach();
    return 0;
}

int runtime_run(RuntimeContext& ctx, const std::vector<std::string>& argv) {
    auto a = Options::parse(create_verb("run"), argv);
    if (!a) return fail("run: " + a.error().str(), 125);
    if (auto s = runtime::reexec_from_sealed_memfd(ctx.argv); !s) return fail(s.error().str(), 125);
    bool detach = a->flag("detach");
    auto p = prepare(*a, "run", !detach);
    if (!p) return fail("run: " + p.error().str(), 125);

    // Signals for the container are blocked before it exists, so none is lost between start
    // and the signalfd; the child unblocks them before exec.
    sigset_t forwarded, previous;
    sigfillset(&forwarded);
    for (int s : {SIGKILL, SIGSTOP, SIGCHLD, SIGSEGV, SIGBUS, SIGILL, SIGFPE, SIGABRT})
        sigdelset(&forwarded, s);
    if (!detach) ::sigprocmask(SIG_BLOCK, &forwarded, &previous);

    runtime::StartError why;
    auto c = launch(ctx, *p, *a, false, !detach, why);
    if (!c)
        return fail(
            fmt::format("run {}: {}", p->id, why.stage.empty() ? c.error().str() : why.str()),
            start_failure_code(why));
    if (detach) {
        c->detach();
        return 0;
    }
    int code = supervise(*c, *p, forwarded);
    if (a->flag("keep")) return code;
    if (auto s = c->cleanup(); !s) fail(fmt::format("run {}: {}", p->id, s.error().str()));
    (void)ctx.store.remove(p->id);
    return code;
}

} // namespace keel::cli
