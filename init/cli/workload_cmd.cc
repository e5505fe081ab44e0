// Workloads: `keel run|ps|stop|kill|rm|logs`, through the user runtime's socket
// (/run/keel/user.sock; KEEL_USER_SOCKET overrides it).
#include <signal.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <optional>

#include <fmt/format.h>

#include "cli/commands.h"
#include "cli/terminal.h"
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
    if (!fd) return wrap("the user runtime (is the user-runtime service running? keel service status user-runtime)", fd.error());
    auto reply = keeld::protocol::request(*fd, req, pass_fd, received);
    ::close(*fd);
    return reply;
}

static int signal_number(std::string s) {
    for (auto& ch : s) ch = static_cast<char>(::toupper(static_cast<unsigned char>(ch)));
    if (!s.empty() && s.find_first_not_of("0123456789") == std::string::npos && s.size() < 3) return std::stoi(s);
    if (starts_with(s, "SIG")) s = s.substr(3);
    for (int sig = 1; sig < NSIG; ++sig)
        if (const char* a = sigabbrev_np(sig); a && s == a) return sig;
    return -1;
}

static std::optional<int64_t> size_arg(const std::string& s) {
    if (s.empty()) return std::nullopt;
    size_t i = 0;
    while (i < s.size() && std::isdigit(static_cast<unsigned char>(s[i]))) ++i;
    if (i == 0 || i > 15) return std::nullopt;
    int64_t v = std::stoll(s.substr(0, i));
    std::string unit = s.substr(i);
    if (unit.empty() || unit == "b") return v;
    if (unit == "k" || unit == "K") return v << 10;
    if (unit == "m" || unit == "M") return v << 20;
    if (unit == "g" || unit == "G") return v << 30;
    return std::nullopt;
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
        if (s.value("oom_killed", false)) std::fprintf(stderr, "keel: %s was killed: out of memory\n", name.c_str());
        if (s["state"] == "failed") {
            std::fprintf(stderr, "keel: %s: %s\n", name.c_str(), s.value("error", std::string()).c_str());
            return 125;
        }
        return s.value("exit_code", 0);
    }
}

int run_main(const std::vector<std::string>& args) {
    json req = {{"cmd", "run"}};
    bool detach = false, rm = false, tty = false, interactive = false;
    std::vector<std::string> env, volumes, caps;
    size_t i = 0;
    auto value = [&](const std::string& opt) -> std::optional<std::string> {
        auto eq = args[i].find('=');
        if (eq != std::string::npos) return args[i].substr(eq + 1);
        if (i + 1 >= args.size()) return std::nullopt;
        (void)opt;
        return args[++i];
    };
    for (; i < args.size() && args[i].size() > 1 && args[i][0] == '-'; ++i) {
        std::string a = args[i], opt = a.substr(0, a.find('='));
        if (opt == "--help" || opt == "-h") {
            std::fputs(kRunUsage, stdout);
            return 0;
        }
        if (opt == "-d" || opt == "--detach") detach = true;
        else if (opt == "--rm") rm = true;
        else if (opt == "--read-only") req["read_only"] = true;
        else if (opt == "-it" || opt == "-ti") tty = interactive = true;
        else if (opt == "-t" || opt == "--tty") tty = true;
        else if (opt == "-i" || opt == "--interactive") interactive = true;
        else {
            auto v = value(opt);
            if (!v) return fail("run: " + opt + " needs a value", 2);
            if (opt == "--name") req["name"] = *v;
            else if (opt == "-e" || opt == "--env") env.push_back(*v);
            else if (opt == "-v" || opt == "--volume") volumes.push_back(*v);
            else if (opt == "--cap-add") caps.push_back(*v);
            else if (opt == "--user" || opt == "-u") req["user"] = *v;
            else if (opt == "--net" || opt == "--network") req["net"] = *v;
            else if (opt == "--memory" || opt == "-m") {
                auto b = size_arg(*v);
                if (!b) return fail("run: --memory " + *v + ": expected a size like 64M", 2);
                req["memory"] = *b;
            } else if (opt == "--pids" || opt == "--pids-limit") {
                auto b = size_arg(*v);
                if (!b) return fail("run: --pids " + *v + ": expected a number", 2);
                req["pids"] = *b;
            } else if (opt == "--cpus") {
                char* end = nullptr;
                double c = std::strtod(v->c_str(), &end);
                if (!end || *end || c <= 0) return fail("run: --cpus " + *v + ": expected a number like 0.5", 2);
                req["cpus"] = c;
            } else {
                std::string near = closest(opt, {"--name", "--detach", "--rm", "--env", "--volume", "--memory", "--pids",
                                                 "--cpus", "--read-only", "--cap-add", "--user", "--net"});
                return fail("run: unknown option " + opt + (near.empty() ? "" : " (did you mean " + near + "?)"), 2);
            }
        }
    }
    if (i >= args.size()) {
        std::fputs(kRunUsage, stderr);
        return 2;
    }
    req["image"] = args[i++];
    req["command"] = std::vector<std::string>(args.begin() + long(i), args.end());
    req["env"] = env;
    req["volumes"] = volumes;
    req["cap_add"] = caps;
    // In the foreground the CLI removes it itself, after reading its last output.
    req["rm"] = rm && detach;
    if (tty && detach) return fail("run: -it and -d do not go together (keel exec -it attaches to a running one)", 2);
    if (tty && !::isatty(0)) return fail("run -t: the input is not a terminal (-i alone passes it as it is)", 2);
    if (interactive && detach) return fail("run: -i and -d do not go together", 2);
    req["tty"] = tty;
    // -i without -t: the workload reads this process's stdin itself (the descriptor travels).
    req["stdin"] = interactive && !tty;
    Fd master;
    auto r = user_request(req, interactive && !tty ? 0 : -1, &master);
    if (!r) return fail(r.error().str(), 125);
    // -t and no terminal: the start failed before the workload had one; attach says why, and
    // --rm still removes it.
    std::string name = (*r)["name"].get<std::string>();
    // Started means exec'd (or failed on the way): wait for that, so what follows (an exec,
    // a ps) finds it running.
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
    if (rm) (void)user_request({{"cmd", "rm"}, {"name", name}, {"force", true}});
    return code;
}

// keel exec [-e K=V] NAME COMMAND...: its output as it comes, then its exit code.
int exec_main(const std::vector<std::string>& args) {
    size_t i = 0;
    bool tty = false, interactive = false;
    std::vector<std::string> env;
    for (; i < args.size() && args[i].size() > 1 && args[i][0] == '-'; ++i) {
        if ((args[i] == "-e" || args[i] == "--env") && i + 1 < args.size()) env.push_back(args[++i]);
        else if (args[i] == "-it" || args[i] == "-ti" || args[i] == "-t") tty = true;
        else if (args[i] == "-i") interactive = true;
        else return fail("exec: unknown option " + args[i], 2);
    }
    if (i + 2 > args.size()) return fail("usage: keel exec [-it] [-e K=V] NAME COMMAND [ARG...]", 2);
    if (tty && !::isatty(0)) return fail("exec -t: the input is not a terminal (-i alone passes it as it is)", 2);
    std::string name = args[i];
    std::vector<std::string> cmd(args.begin() + long(i) + 1, args.end());
    Fd master;
    bool pass_stdin = interactive && !tty;
    auto r = user_request({{"cmd", "exec"}, {"name", name}, {"command", cmd}, {"env", env}, {"tty", tty}, {"stdin", pass_stdin}},
                          pass_stdin ? 0 : -1, &master);
    if (!r) return fail(r.error().str(), 125);
    if (master) proxy_terminal(master.get());
    int id = (*r)["exec"].get<int>();
    size_t offset = 0;
    for (;;) {
        auto o = user_request({{"cmd", "exec_output"}, {"exec", id}, {"offset", offset}});
        if (!o) return fail(o.error().str(), 125);
        std::string out = (*o)["output"].get<std::string>();
        std::fwrite(out.data(), 1, out.size(), stdout);
        std::fflush(stdout);
        offset = (*o)["offset"].get<size_t>();
        if ((*o)["done"].get<bool>()) return (*o)["exit_code"].get<int>();
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

int workload_main(const std::string& cmd, const std::vector<std::string>& args) {
    auto flag = [&](const char* a, const char* b = nullptr) {
        for (const auto& x : args)
            if (x == a || (b && x == b)) return true;
        return false;
    };
    std::vector<std::string> names;
    for (size_t i = 0; i < args.size(); ++i) {
        if (args[i] == "-t" || args[i] == "-s" || args[i] == "-n" || args[i] == "--signal" || args[i] == "--lines") {
            ++i;
            continue;
        }
        if (!args[i].empty() && args[i][0] != '-') names.push_back(args[i]);
    }
    auto opt = [&](const char* a, const char* b) -> std::optional<std::string> {
        for (size_t i = 0; i + 1 < args.size(); ++i)
            if (args[i] == a || args[i] == b) return args[i + 1];
        return std::nullopt;
    };
    if (cmd == "ps") {
        auto r = user_request({{"cmd", "list"}});
        if (!r) return fail(r.error().str());
        json out = json::array();
        for (const auto& s : (*r)["services"])
            if (flag("-a", "--all") || (s["state"] != "exited" && s["state"] != "failed")) out.push_back(s);
        if (flag("--json")) {
            std::puts(out.dump().c_str());
            return 0;
        }
        std::printf("%-20s %-16s %-9s %-7s %-9s %s\n", "NAME", "IMAGE", "STATE", "PID", "CREATED", "STATUS");
        for (const auto& s : out) {
            int pid = s["pid"].get<int>();
            std::string status = s.value("last_exit", std::string());
            if (s["state"] == "running") status = "up";
            std::printf("%-20s %-16s %-9s %-7s %-9s %s\n", s["name"].get<std::string>().c_str(),
                        s.value("image", std::string()).c_str(), s["state"].get<std::string>().c_str(),
                        pid ? std::to_string(pid).c_str() : "-", age(s.value("created", int64_t(0))).c_str(), status.c_str());
        }
        return 0;
    }
    if (names.empty()) return fail(cmd + " needs a workload name", 2);
    if (cmd == "logs") {
        auto r = user_request({{"cmd", "logs"}, {"name", names[0]}, {"lines", 500}});
        if (!r) return fail(r.error().str());
        for (const auto& l : (*r)["lines"])
            if (!starts_with(l.get<std::string>(), "[keeld] ")) std::puts(l.get<std::string>().c_str());
        if (flag("-f", "--follow")) {
            std::fflush(stdout);
            return attach(names[0], (*r).value("next", uint64_t(0)));
        }
        return 0;
    }
    int rc = 0;
    for (const auto& n : names) {
        json req = {{"name", n}};
        if (cmd == "stop") {
            req["cmd"] = "stop";
            if (auto t = opt("-t", "--time")) req["timeout"] = std::atoi(t->c_str());
        } else if (cmd == "kill") {
            req["cmd"] = "kill";
            if (auto sname = opt("-s", "--signal")) {
                int sig = signal_number(*sname);
                if (sig <= 0) return fail("kill: unknown signal " + *sname, 2);
                req["signal"] = sig;
            }
        } else if (cmd == "rm") {
            req["cmd"] = "rm";
            req["force"] = flag("-f", "--force");
        } else {
            return fail("unknown command " + cmd, 2);
        }
        auto r = user_request(req);
        if (!r) {
            rc = fail(r.error().str());
            continue;
        }
        if (cmd == "stop") {
            // Wait for it to be down, as a user expects of stop.
            for (int i = 0; i < 400; ++i) {
                auto st = user_request({{"cmd", "status"}, {"name", n}});
                if (!st || (*st)["service"]["state"] != "stopping") break;
                ::usleep(50 * 1000);
            }
        }
        std::puts(n.c_str());
    }
    return rc;
}

} // namespace keel::cli
