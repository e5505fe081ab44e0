// Workloads: `keel run|ps|stop|kill|rm|logs`, through the user runtime's socket
// (/run/keel/user.sock; KEEL_USER_SOCKET overrides it).
#include <signal.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <optional>

#include <fmt/format.h>

#include "cli/commands.h"
#include "cli/options.h"
#include "cli/terminal.h"
#include "common/signals.h"
#include "common/sizes.h"
#include "common/strings.h"
#include "keeld/protocol.h"

namespace keel::cli {

using nlohmann::json;

static int fail(const std::string& msg, int code = 1) {
    std::fprintf(stderr, "keel: %s\n", msg.c_str());
    return code;
}

Result<json> user_request(const json& req, int pass_fd, Fd* received) {
    const char* env = std::getenv("KEEL_USER_SOCKET");
    auto fd = keeld::protocol::connect(env && *env ? env : keeld::protocol::socket_path("user"));
    if (!fd)
        return wrap("the user runtime (is the user-runtime service running? keel service status "
                    "user-runtime)",
                    fd.error());
    auto reply = keeld::protocol::request(*fd, req, pass_fd, received);
    ::close(*fd);
    return reply;
}

static const char* kRunUsage = R"(usage: keel run [OPTIONS] IMAGE [COMMAND [ARG...]]

  --name NAME        a name (default: a random one)
  -d, --detach       run in the background; print the name
  -it                interactive, on a terminal: this terminal becomes its
                     (a pty); its output then goes here only, not to keel logs
  -i                 it reads this command's stdin (a pipe, a file) as its own
  --rm               remove the workload when it exits
  -e, --env K=V      an environment variable (repeatable)
  -v, --volume HOST:CONTAINER[:ro]
                     bind a directory of the user runtime's storage (repeatable)
  --memory SIZE      memory limit (e.g. 64M)
  --pids N           process limit
  --cpus N           CPU limit (e.g. 0.5)
  --read-only        a read-only root
  --cap-add CAP      a capability beyond the default set (repeatable)
  --user UID[:GID]   run as this user
  --net none|host    no network, or the user runtime's (the host's); default host
)";

// Follows a workload's output until it exits; returns its exit code. keeld answers `wait`
// the moment the workload finishes (or after a quarter second, to print what came so far).
static int attach(const std::string& name, uint64_t next) {
    auto print_since = [&](uint64_t& from) -> bool {
        auto more = user_request({{"cmd", "logs"}, {"name", name}, {"since", from}});
        if (!more) return false;
        for (const auto& l : (*more)["lines"]) {
            std::string line = l.get<std::string>();
            if (!starts_with(line, "[keeld] ")) std::puts(line.c_str());
        }
        from = (*more).value("next", from);
        std::fflush(stdout);
        return true;
    };
    for (;;) {
        auto w = user_request({{"cmd", "wait"}, {"name", name}, {"timeout_ms", 250}});
        if (!w) return fail(w.error().str());
        if (!print_since(next)) return fail("logs of " + name);
        if (!(*w)["done"].get<bool>()) continue;
        const json& s = (*w)["service"];
        if (s.value("oom_killed", false))
            std::fprintf(stderr, "keel: %s was killed: out of memory\n", name.c_str());
        if (s["state"] == "failed") {
            std::fprintf(stderr, "keel: %s: %s\n", name.c_str(),
                         s.value("error", std::string()).c_str());
            return 125;
        }
        return s.value("exit_code", 0);
    }
}

VerbSpec run_options() {
    return {"run",
            {{"name", "", true, false, {}, "a name (default: a random one)"},
             {"detach", "d", false, false, {}, "run in the background; print the name"},
             {"tty", "t", false, false, {}, "on a terminal (a pty): -it"},
             {"interactive", "i", false, false, {}, "it reads this command's stdin"},
             {"rm", "", false, false, {}, "remove the workload when it exits"},
             {"env", "e", true, true, {}, "an environment variable K=V"},
             {"volume", "v", true, true, {}, "HOST:CONTAINER[:ro]"},
             {"memory", "m", true, false, {}, "memory limit (e.g. 64M)"},
             {"pids", "", true, false, {"pids-limit"}, "process limit"},
             {"cpus", "", true, false, {}, "CPU limit (e.g. 0.5)"},
             {"read-only", "", false, false, {}, "a read-only root"},
             {"cap-add", "", true, true, {}, "a capability beyond the default set"},
             {"user", "u", true, false, {}, "UID[:GID]"},
             {"net", "", true, false, {"network"}, "none or host"},
             {"help", "h"}},
            true};
}

// The `run` request from the parsed command line, or the message for "keel: ...".
static Result<json> run_request(const Options& o) {
    json req = {{"cmd", "run"}};
    if (o.flag("read-only")) req["read_only"] = true;
    if (auto v = o.value("name")) req["name"] = *v;
    if (auto v = o.value("user")) req["user"] = *v;
    if (auto v = o.value("net")) req["net"] = *v;
    if (auto v = o.value("memory")) {
        auto b = parse_size(*v);
        if (!b) return plain_error("run: --memory " + *v + ": expected a size like 64M");
        req["memory"] = *b;
    }
    if (auto v = o.value("pids")) {
        auto b = parse_size(*v);
        if (!b) return plain_error("run: --pids " + *v + ": expected a number");
        req["pids"] = *b;
    }
    if (auto v = o.value("cpus")) {
        char* end = nullptr;
        double c = std::strtod(v->c_str(), &end);
        if (!end || *end || c <= 0)
            return plain_error("run: --cpus " + *v + ": expected a number like 0.5");
        req["cpus"] = c;
    }
    const auto& pos = o.positional();
    req["image"] = pos[0];
    req["command"] = std::vector<std::string>(pos.begin() + 1, pos.end());
    req["env"] = o.values("env");
    req["volumes"] = o.values("volume");
    req["cap_add"] = o.values("cap-add");
    bool detach = o.flag("detach"), tty = o.flag("tty"), interactive = o.flag("interactive");
    // In the foreground the CLI removes it itself, after reading its last output.
    req["rm"] = o.flag("rm") && detach;
    if (tty && detach)
        return plain_error(
            "run: -it and -d do not go together (keel exec -it attaches to a running one)");
    if (tty && !::isatty(0))
        return plain_error("run -t: the input is not a terminal (-i alone passes it as it is)");
    if (interactive && detach) return plain_error("run: -i and -d do not go together");
    req["tty"] = tty;
    // -i without -t: the workload reads this process's stdin itself (the descriptor travels).
    req["stdin"] = interactive && !tty;
    return req;
}

int run_main(const std::vector<std::string>& args) {
    auto o = Options::parse(run_options(), args);
    if (!o) return fail("run: " + o.error().str(), 2);
    if (o->flag("help") || o->positional().empty()) {
        std::fputs(kRunUsage, o->flag("help") ? stdout : stderr);
        return o->flag("help") ? 0 : 2;
    }
    auto req = run_request(*o);
    if (!req) return fail(req.error().message, 2);
    bool detach = o->flag("detach"), pass_stdin = (*req)["stdin"].get<bool>();
    Fd master;
    auto r = user_request(*req, pass_stdin ? 0 : -1, &master);
    if (!r) return fail(r.error().str(), 125);
    // -t and no terminal: the start failed before the workload had one; attach says why, and
    // --rm still removes it.
    std::string name = (*r)["name"].get<std::string>();
    // Started means exec'd (or failed on the way): wait for that, so what follows (an exec,
    // a ps) finds it running. (keeld's `wait` answers only once a workload has finished.)
    for (int k = 0; detach && k < 600; ++k) {
        auto st = user_request({{"cmd", "status"}, {"name", name}});
        if (!st || (*st)["service"]["state"] != "starting") break;
        ::usleep(20 * 1000);
    }
    if (detach) {
        std::puts(name.c_str());
        return 0;
    }
    if (master) proxy_terminal(master.get());
    int code = attach(name, 0);
    if (o->flag("rm")) (void)user_request({{"cmd", "rm"}, {"name", name}, {"force", true}});
    return code;
}

VerbSpec exec_options() {
    return {"exec",
            {{"env", "e", true, true, {}, "an environment variable K=V"},
             {"tty", "t", false, false, {}, "on a terminal (a pty): -it"},
             {"interactive", "i", false, false, {}, "it reads this command's stdin"},
             {"help", "h"}},
            true};
}

// keel exec [-it] [-e K=V] NAME COMMAND...: its output as it comes, then its exit code.
int exec_main(const std::vector<std::string>& args) {
    static const char* kExecUsage = "usage: keel exec [-it] [-e K=V] NAME COMMAND [ARG...]";
    auto o = Options::parse(exec_options(), args);
    if (!o) return fail("exec: " + o.error().str(), 2);
    if (o->flag("help")) return std::puts(kExecUsage), 0;
    const auto& pos = o->positional();
    if (pos.size() < 2) return fail(kExecUsage, 2);
    bool tty = o->flag("tty"), interactive = o->flag("interactive");
    if (tty && !::isatty(0))
        return fail("exec -t: the input is not a terminal (-i alone passes it as it is)", 2);
    std::string name = pos[0];
    std::vector<std::string> cmd(pos.begin() + 1, pos.end());
    Fd master;
    bool pass_stdin = interactive && !tty;
    auto r = user_request({{"cmd", "exec"},
                           {"name", name},
                           {"command", cmd},
                           {"env", o->values("env")},
                           {"tty", tty},
                           {"stdin", pass_stdin}},
                          pass_stdin ? 0 : -1, &master);
    if (!r) return fail(r.error().str(), 125);
    if (master) proxy_terminal(master.get());
    int id = (*r)["exec"].get<int>();
    size_t offset = 0;
    // keeld has no `wait` for an exec: its output is asked for a few times a second.
    for (;;) {
        auto out = user_request({{"cmd", "exec_output"}, {"exec", id}, {"offset", offset}});
        if (!out) return fail(out.error().str(), 125);
        std::string text = (*out)["output"].get<std::string>();
        std::fwrite(text.data(), 1, text.size(), stdout);
        std::fflush(stdout);
        offset = (*out)["offset"].get<size_t>();
        if ((*out)["done"].get<bool>()) return (*out)["exit_code"].get<int>();
        ::usleep(50 * 1000);
    }
}

std::string age(int64_t created) {
    int64_t s = int64_t(::time(nullptr)) - created;
    if (s < 60) return fmt::format("{}s ago", std::max<int64_t>(s, 0));
    if (s < 3600) return fmt::format("{}m ago", s / 60);
    if (s < 48 * 3600) return fmt::format("{}h ago", s / 3600);
    return fmt::format("{}d ago", s / 86400);
}

VerbSpec workload_options(const std::string& cmd) {
    const OptionSpec help{"help", "h"};
    if (cmd == "ps")
        return {"ps", {{"all", "a", false, false, {}, "exited ones too"}, {"json"}, help}};
    if (cmd == "stop")
        return {"stop", {{"time", "t", true, false, {}, "seconds before SIGKILL"}, help}};
    if (cmd == "kill")
        return {"kill", {{"signal", "s", true, false, {}, "TERM, SIGTERM or 15"}, help}};
    if (cmd == "rm") return {"rm", {{"force", "f", false, false, {}, "stop it first"}, help}};
    // --lines is accepted and, as before, not used: logs shows the last 500.
    if (cmd == "logs") return {"logs", {{"follow", "f"}, {"lines", "n", true}, help}};
    return {cmd, {help}};
}

static int ps(const Options& o) {
    auto r = user_request({{"cmd", "list"}});
    if (!r) return fail(r.error().str());
    json out = json::array();
    for (const auto& s : (*r)["services"])
        if (o.flag("all") || (s["state"] != "exited" && s["state"] != "failed")) out.push_back(s);
    if (o.flag("json")) {
        std::puts(out.dump().c_str());
        return 0;
    }
    std::printf("%-20s %-16s %-9s %-7s %-9s %s\n", "NAME", "IMAGE", "STATE", "PID", "CREATED",
                "STATUS");
    for (const auto& s : out) {
        int pid = s["pid"].get<int>();
        std::string status = s.value("last_exit", std::string());
        if (s["state"] == "running") status = "up";
        std::printf("%-20s %-16s %-9s %-7s %-9s %s\n", s["name"].get<std::string>().c_str(),
                    s.value("image", std::string()).c_str(), s["state"].get<std::string>().c_str(),
                    pid ? std::to_string(pid).c_str() : "-",
                    age(s.value("created", int64_t(0))).c_str(), status.c_str());
    }
    return 0;
}

static int logs(const Options& o, const std::string& name) {
    auto r = user_request({{"cmd", "logs"}, {"name", name}, {"lines", 500}});
    if (!r) return fail(r.error().str());
    for (const auto& l : (*r)["lines"])
        if (!starts_with(l.get<std::string>(), "[keeld] ")) std::puts(l.get<std::string>().c_str());
    if (!o.flag("follow")) return 0;
    std::fflush(stdout);
    return attach(name, (*r).value("next", uint64_t(0)));
}

// After a stop request: until the workload is down, as a user expects of stop. keeld answers
// `wait` when it has exited (or at once if it already had); 20 s at most, as before.
static void wait_stopped(const std::string& name) {
    for (int i = 0; i < 20; ++i) {
        auto w = user_request({{"cmd", "wait"}, {"name", name}, {"timeout_ms", 1000}});
        if (!w || (*w)["done"].get<bool>()) return;
    }
}

int workload_main(const std::string& cmd, const std::vector<std::string>& args) {
    auto o = Options::parse(workload_options(cmd), args);
    if (!o) return fail(cmd + ": " + o.error().str(), 2);
    if (o->flag("help")) {
        std::printf("usage: keel %s\n", cmd == "ps"     ? "ps [-a] [--json]"
                                        : cmd == "stop" ? "stop [-t SECONDS] NAME..."
                                        : cmd == "kill" ? "kill [-s SIGNAL] NAME..."
                                        : cmd == "rm"   ? "rm [-f] NAME..."
                                                        : "logs [-f] NAME");
        return 0;
    }
    if (cmd == "ps") return ps(*o);
    const std::vector<std::string>& names = o->positional();
    if (names.empty()) return fail(cmd + " needs a workload name", 2);
    if (cmd == "logs") return logs(*o, names[0]);
    json base = {{"cmd", cmd}};
    if (cmd == "stop") {
        if (auto t = o->value("time")) base["timeout"] = std::atoi(t->c_str());
    } else if (cmd == "kill") {
        if (auto sname = o->value("signal")) {
            int sig = signal_number(*sname);
            if (sig <= 0) return fail("kill: unknown signal " + *sname, 2);
            base["signal"] = sig;
        }
    } else if (cmd == "rm") {
        base["force"] = o->flag("force");
    } else {
        return fail("unknown command " + cmd, 2);
    }
    int rc = 0;
    for (const auto& n : names) {
        json req = base;
        req["name"] = n;
        auto r = user_request(req);
        if (!r) {
            rc = fail(r.error().str());
            continue;
        }
        if (cmd == "stop") wait_stopped(n);
        std::puts(n.c_str());
    }
    return rc;
}

} // namespace keel::cli
