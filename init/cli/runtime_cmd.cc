#include "cli/runtime_cmd.h"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <cstdio>
#include <cstring>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "cli/options.h"
#include "common/log.h"
#include "common/signals.h"
#include "common/strings.h"
#include "runtime/cgroup.h"
#include "runtime/oci.h"

namespace keel::cli {

using runtime::state::ContainerState;
using runtime::state::Phase;

int fail(const std::string& message, int code) {
    std::fprintf(stderr, "keel runtime: %s\n", message.c_str());
    return code;
}

static const char* kUsage = R"(usage: keel runtime [--root DIR] [--debug] COMMAND [ARGS]

OCI runtime commands (a runc-compatible subset) on bundles of config.json + rootfs:
  spec [-b DIR] [--rootless]      write a default config.json into DIR (default: .)
  create [-b DIR] [--pid-file F] [--console-socket S] [--preserve-fds N] ID
                                  set up container ID, stopped just before exec
  start ID                        run the created container's process
  run [-b DIR] [-d] [--pid-file F] [--console-socket S] [--preserve-fds N] ID
                                  create + start; waits and exits with its code unless -d
  state ID                        print the OCI state JSON
  kill [--all] ID [SIGNAL]        send SIGNAL (default TERM) to the container
  delete [-f|--force] ID          remove a stopped container (--force: kill it first)
  list [-q] [--format table|json] list containers

--root DIR is the state directory (default /run/keel/runtime).
)";

static Result<std::string> one_id(const Options& a, const char* cmd) {
    if (a.positional().size() != 1)
        return plain_error(
            fmt::format("{} needs exactly one container id (got {})", cmd, a.positional().size()));
    return a.positional()[0];
}

static int cmd_spec(RuntimeContext&, const std::vector<std::string>& argv) {
    auto a = Options::parse(runc_verb("spec", {{"bundle", "b", true}, {"rootless"}}), argv);
    if (!a) return fail("spec: " + a.error().str());
    std::string path = a->value_or("bundle", ".") + "/config.json";
    if (::access(path.c_str(), F_OK) == 0)
        return fail(fmt::format("spec: {} exists; remove it first", path));
    if (!write_file_atomic(path, runtime::oci::default_config_json(a->flag("rootless")), 0644))
        return fail("spec: " + sys_error("write " + path).str());
    return 0;
}

static int cmd_start(RuntimeContext& ctx, const std::vector<std::string>& argv) {
    auto a = Options::parse(runc_verb("start", {}), argv);
    if (!a) return fail("start: " + a.error().str());
    auto id = one_id(*a, "start");
    if (!id) return fail(id.error().str());
    auto st = ctx.store.load(*id);
    if (!st) return fail(st.error().str());
    Phase phase = runtime::state::phase_of(ctx.store, *st);
    if (phase != Phase::created)
        return fail(fmt::format("cannot start container {}: it is {}, not created", *id,
                                runtime::state::phase_name(phase)));
    std::string fifo = ctx.store.fifo(*id);
    // Non-blocking: if the container died while held there is no reader, and open fails with
    // ENXIO instead of hanging.
    Fd fd(::open(fifo.c_str(), O_WRONLY | O_NONBLOCK | O_CLOEXEC));
    if (!fd) return fail(sys_error(fmt::format("start {}: open exec fifo", *id)).str());
    if (::write(fd.get(), "0", 1) != 1) return fail(sys_error(fmt::format("start {}", *id)).str());
    ::unlink(fifo.c_str());
    return 0;
}

static int cmd_state(RuntimeContext& ctx, const std::vector<std::string>& argv) {
    auto a = Options::parse(runc_verb("state", {}), argv);
    if (!a) return fail("state: " + a.error().str());
    auto id = one_id(*a, "state");
    if (!id) return fail(id.error().str());
    auto st = ctx.store.load(*id);
    if (!st) return fail(st.error().str());
    std::puts(runtime::state::to_json(*st, runtime::state::phase_of(ctx.store, *st)).c_str());
    return 0;
}

static int cmd_kill(RuntimeContext& ctx, const std::vector<std::string>& argv) {
    auto a = Options::parse(runc_verb("kill", {{"all", "a"}}), argv);
    if (!a) return fail("kill: " + a.error().str());
    const auto& pos = a->positional();
    if (pos.empty() || pos.size() > 2)
        return fail("kill needs a container id and optionally a signal");
    std::string sig_name = pos.size() == 2 ? pos[1] : "TERM";
    int sig = signal_number(sig_name);
    if (sig < 0) return fail(fmt::format("kill: unknown signal '{}'", sig_name));
    auto st = ctx.store.load(pos[0]);
    if (!st) return fail(st.error().str());
    Fd pidfd = runtime::state::open_process(*st);
    if (!pidfd) return fail(fmt::format("cannot kill container {}: it is not running", pos[0]));
    if (::syscall(SYS_pidfd_send_signal, pidfd.get(), sig, nullptr, 0) < 0)
        return fail(sys_error(fmt::format("kill {}", pos[0])).str());
    if (a->flag("all") && !st->cgroup.empty()) {
        std::string procs;
        read_file((st->cgroup + "/cgroup.procs").c_str(), procs);
        for (const auto& p : split(procs, '\n'))
            if (!p.empty()) ::kill(std::stoi(p), sig);
    }
    return 0;
}

static bool wait_gone(int pidfd, int timeout_ms) {
    pollfd p{pidfd, POLLIN, 0};
    int r;
    do
        r = ::poll(&p, 1, timeout_ms);
    while (r < 0 && errno == EINTR);
    return r > 0;
}

static int cmd_delete(RuntimeContext& ctx, const std::vector<std::string>& argv) {
    auto a = Options::parse(runc_verb("delete", {{"force", "f"}}), argv);
    if (!a) return fail("delete: " + a.error().str());
    auto id = one_id(*a, "delete");
    if (!id) return fail(id.error().str());
    auto st = ctx.store.load(*id);
    if (!st) return fail(st.error().str());
    Phase phase = runtime::state::phase_of(ctx.store, *st);
    if (phase != Phase::stopped) {
        if (!a->flag("force"))
            return fail(
                fmt::format("cannot delete container {}: it is {} (stop it first, or use --force)",
                            *id, runtime::state::phase_name(phase)));
        if (Fd pidfd = runtime::state::open_process(*st)) {
            ::syscall(SYS_pidfd_send_signal, pidfd.get(), SIGKILL, nullptr, 0);
            if (!wait_gone(pidfd.get(), 10000))
                return fail(
                    fmt::format("delete {}: process {} did not die after SIGKILL", *id, st->pid));
        }
    }
    // The cgroup goes first: it kills whatever the container left behind.
    if (auto s = runtime::cgroup::destroy(st->cgroup); !s)
        return fail(fmt::format("delete {}: {}", *id, s.error().str()));
    if (auto s = ctx.store.remove(*id); !s)
        return fail(fmt::format("delete {}: {}", *id, s.error().str()));
    return 0;
}

static int cmd_list(RuntimeContext& ctx, const std::vector<std::string>& argv) {
    auto a = Options::parse(runc_verb("list", {{"format", "f", true}, {"quiet", "q"}}), argv);
    if (!a) return fail("list: " + a.error().str());
    std::string format = a->value_or("format", "table");
    if (format != "table" && format != "json")
        return fail(fmt::format("list: unknown format '{}' (table or json)", format));
    nlohmann::ordered_json all = nlohmann::ordered_json::array();
    std::vector<std::vector<std::string>> rows{{"ID", "PID", "STATUS", "BUNDLE", "CREATED"}};
    for (const auto& id : ctx.store.list()) {
        auto st = ctx.store.load(id);
        if (!st) continue; // being created or deleted right now
        Phase phase = runtime::state::phase_of(ctx.store, *st);
        pid_t pid = phase == Phase::stopped ? 0 : st->pid;
        if (a->flag("quiet")) {
            std::puts(id.c_str());
        } else if (format == "json") {
            all.push_back(
                nlohmann::ordered_json::parse(runtime::state::to_json(*st, phase, false)));
        } else {
            rows.push_back({id, std::to_string(pid), runtime::state::phase_name(phase), st->bundle,
                            st->created});
        }
    }
    if (a->flag("quiet")) return 0;
    if (format == "json") {
        std::puts(all.dump().c_str());
        return 0;
    }
    std::vector<size_t> width(rows[0].size(), 0);
    for (const auto& r : rows)
        for (size_t i = 0; i < r.size(); ++i)
            width[i] = std::max(width[i], r[i].size());
    for (const auto& r : rows) {
        std::string line;
        for (size_t i = 0; i < r.size(); ++i)
            line += i + 1 == r.size() ? r[i] : fmt::format("{:<{}}  ", r[i], width[i]);
        std::puts(line.c_str());
    }
    return 0;
}

int runtime_main(const std::vector<std::string>& args, char** argv) {
    // Global options come before the command, as with runc.
    VerbSpec global = runc_verb("runtime", {{"root", "", true}, {"debug"}, {"help", "h"}});
    global.options_first = true;
    auto g = Options::parse(global, args);
    if (!g) return fail(fmt::format("{}\n{}", g.error().str(), kUsage), 2);
    if (g->flag("help")) {
        std::fputs(kUsage, stdout);
        return 0;
    }
    if (g->flag("debug")) log::set_debug(true);
    if (g->positional().empty()) {
        std::fputs(kUsage, stderr);
        return 2;
    }
    std::string root = g->value_or("root", "/run/keel/runtime");
    if (root.empty() || root[0] != '/') {
        char cwd[4096];
        if (!::getcwd(cwd, sizeof cwd)) return fail(sys_error("getcwd").str());
        root = std::string(cwd) + "/" + root;
    }
    RuntimeContext ctx{runtime::state::Store(root), argv};
    std::string cmd = g->positional()[0];
    std::vector<std::string> rest(g->positional().begin() + 1, g->positional().end());
    using Handler = int (*)(RuntimeContext&, const std::vector<std::string>&);
    static const std::vector<std::pair<std::string, Handler>> commands = {
        {"spec", cmd_spec},     {"create", runtime_create}, {"start", cmd_start},
        {"run", runtime_run},   {"state", cmd_state},       {"kill", cmd_kill},
        {"delete", cmd_delete}, {"list", cmd_list},
    };
    std::vector<std::string> names;
    for (const auto& [name, handler] : commands) {
        if (name == cmd) return handler(ctx, rest);
        names.push_back(name);
    }
    std::string near = closest(cmd, names);
    return fail(fmt::format("unknown command '{}'{}; see keel runtime --help", cmd,
                            near.empty() ? "" : fmt::format(" (did you mean '{}'?)", near)),
                2);
}

} // namespace keel::cli
