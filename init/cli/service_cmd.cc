// `keel service ...` (and `ros service ...`): talks to keeld's system instance.
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <optional>

#include <fmt/format.h>

#include "cli/commands.h"
#include "cli/options.h"
#include "common/sizes.h"
#include "keeld/protocol.h"

namespace keel::cli {

using nlohmann::json;

static const char* kServiceUsage = R"(usage: keel service COMMAND

  list [--json] [--ros]          services: ENABLED NAME STATE PID UPTIME RESTARTS
  status NAME [--json]           state, pid, last exit, capabilities, namespaces, recent log
  start|stop|restart NAME [-t SECONDS]
                                 waits until the service runs (or has stopped); -t is
                                 the stop timeout before SIGKILL (default: stop_timeout)
  enable|disable NAME            persisted in /var/lib/keel/config.yml, effective at once
  logs NAME [-n N] [-f]          the service's recent output; -f follows it
)";

// A whole non-negative number, or nothing (std::stoi would throw on "abc" and take "5x").
static std::optional<int> count(const std::string& s) {
    if (s.empty() || s.size() > 9 || s.find_first_not_of("0123456789") != std::string::npos)
        return std::nullopt;
    return std::stoi(s);
}

static std::string resources_line(const json& r) {
    std::string out;
    auto add = [&](const std::string& x) { out += (out.empty() ? "" : ", ") + x; };
    if (r.contains("memory")) add("memory " + format_size(r["memory"].get<int64_t>()));
    if (r.contains("pids")) add(fmt::format("pids {}", r["pids"].get<int64_t>()));
    if (r.contains("cpu_quota_us"))
        add(fmt::format("cpu {:.2f}", double(r["cpu_quota_us"].get<int64_t>()) / 100000.0));
    return out.empty() ? "no limits" : out;
}

static int err(const std::string& msg, int code = 1) {
    std::fprintf(stderr, "keel: %s\n", msg.c_str());
    return code;
}

static std::string uptime(int64_t s) {
    if (s < 0) return "-";
    if (s < 60) return fmt::format("{}s", s);
    if (s < 3600) return fmt::format("{}m{}s", s / 60, s % 60);
    return fmt::format("{}h{}m", s / 3600, (s % 3600) / 60);
}

Result<json> system_request(const json& req) {
    // KEEL_SYSTEM_SOCKET points the CLI at another daemon (tests run keeld as a normal process).
    const char* env = std::getenv("KEEL_SYSTEM_SOCKET");
    auto fd = keeld::protocol::connect(env && *env ? env : keeld::protocol::socket_path("system"));
    if (!fd) return fd.error();
    auto reply = keeld::protocol::request(*fd, req);
    ::close(*fd);
    return reply;
}

// Each subcommand's options. An unknown subcommand gets none: its name is the error.
static VerbSpec service_verb(const std::string& cmd) {
    const OptionSpec as_json{"json", "", false, false, {}, "as JSON"};
    if (cmd == "list")
        return {"service list", {as_json, {"ros", "", false, false, {}, "ENABLED NAME only"}}};
    if (cmd == "status") return {"service status", {as_json}};
    if (cmd == "logs")
        return {"service logs",
                {{"lines", "n", true, false, {}, "how many recent lines (default 50)"},
                 {"follow", "f", false, false, {}, "then follow the output"}}};
    if (cmd == "start" || cmd == "stop" || cmd == "restart" || cmd == "enable" || cmd == "disable")
        return {"service " + cmd,
                {{"timeout", "t", true, false, {}, "the stop timeout before SIGKILL, in seconds"}}};
    return {"service " + cmd, {}};
}

static int list_services(const Options& o) {
    auto r = system_request({{"cmd", "list"}});
    if (!r) return err(r.error().str());
    const json& all = (*r)["services"];
    if (o.flag("json")) {
        std::puts(all.dump().c_str());
        return 0;
    }
    if (o.flag("ros")) {
        for (const auto& s : all)
            std::printf("%-9s %s\n", s["enabled"].get<bool>() ? "enabled" : "disabled",
                        s["name"].get<std::string>().c_str());
        return 0;
    }
    std::printf("%-9s %-14s %-11s %-7s %-8s %s\n", "ENABLED", "NAME", "STATE", "PID", "UPTIME",
                "RESTARTS");
    for (const auto& s : all) {
        int pid = s["pid"].get<int>();
        std::printf("%-9s %-14s %-11s %-7s %-8s %d\n", s["enabled"].get<bool>() ? "yes" : "no",
                    s["name"].get<std::string>().c_str(), s["state"].get<std::string>().c_str(),
                    pid ? std::to_string(pid).c_str() : "-",
                    pid ? uptime(s["uptime_s"].get<int64_t>()).c_str() : "-",
                    s["restarts"].get<int>());
        std::string e = s["error"].get<std::string>();
        if (!e.empty() && s["state"] != "running") std::printf("          %s\n", e.c_str());
    }
    return 0;
}

static int show_status(const Options& o, const std::string& name, const json& req) {
    auto r = system_request(req);
    if (!r) return err(r.error().str());
    const json& s = (*r)["service"];
    if (o.flag("json")) {
        std::puts(s.dump().c_str());
        return 0;
    }
    std::printf("%s: %s%s\n", name.c_str(), s["state"].get<std::string>().c_str(),
                s["enabled"].get<bool>() ? " (enabled)" : " (disabled)");
    if (s["pid"].get<int>())
        std::printf("  pid:           %d, up %s\n", s["pid"].get<int>(),
                    uptime(s["uptime_s"].get<int64_t>()).c_str());
    std::printf("  restarts:      %d\n", s["restarts"].get<int>());
    if (!s["last_exit"].get<std::string>().empty())
        std::printf("  last exit:     %s\n", s["last_exit"].get<std::string>().c_str());
    if (!s["error"].get<std::string>().empty() && s["error"] != s["last_exit"])
        std::printf("  reason:        %s\n", s["error"].get<std::string>().c_str());
    auto list = [](const json& j) {
        std::string out;
        for (const auto& x : j)
            out += (out.empty() ? "" : " ") + x.get<std::string>();
        return out.empty() ? std::string("none") : out;
    };
    if (s.contains("image")) {
        std::printf("  image:         %s\n", s["image"].get<std::string>().c_str());
        std::printf("  user:          %s\n", s["user"].get<std::string>().c_str());
        std::printf("  capabilities:  %s\n", list(s["capabilities"]).c_str());
        std::printf("  host ns:       %s\n", list(s["host_namespaces"]).c_str());
        if (s.contains("namespaces")) {
            std::string line;
            for (const auto& [t, v] : s["namespaces"].items())
                line +=
                    (line.empty() ? "" : " ") +
                    (v["shared_with_host"].get<bool>() ? t + ":host" : v["id"].get<std::string>());
            std::printf("  namespaces:    %s\n", line.c_str());
        }
        if (s.contains("host_uids"))
            std::printf("  host uids:     %s\n", list(s["host_uids"]).c_str());
        std::printf("  resources:     %s\n", resources_line(s["resources"]).c_str());
        std::printf("  recent log:\n");
        for (const auto& l : s["log"])
            std::printf("    %s\n", l.get<std::string>().c_str());
    }
    return 0;
}

static int show_logs(const Options& o, const std::string& name, json req) {
    auto lines = count(o.value_or("lines", "50"));
    if (!lines)
        return err("service logs: --lines needs a number, not '" + o.value_or("lines", "") + "'",
                   2);
    req["lines"] = *lines;
    auto r = system_request(req);
    if (!r) return err(r.error().str());
    for (const auto& l : (*r)["lines"])
        std::puts(l.get<std::string>().c_str());
    if (!o.flag("follow")) return 0;
    // Follow: ask for what came after the last line seen, a few times a second, until
    // interrupted or keeld goes away.
    uint64_t next = (*r).value("next", uint64_t(0));
    for (;;) {
        std::fflush(stdout);
        ::usleep(250 * 1000);
        auto more = system_request({{"cmd", "logs"}, {"name", name}, {"since", next}});
        if (!more) return err(more.error().str());
        for (const auto& l : (*more)["lines"])
            std::puts(l.get<std::string>().c_str());
        next = (*more).value("next", next);
    }
}

// start, stop, restart, enable, disable: the request, then how it ended.
static int change_state(const Options& o, const std::string& cmd, const std::string& name,
                        json req) {
    int wait_s = 35; // a start waits for readiness (keeld gives up at 30 s)
    if (auto t = o.value("timeout")) {
        auto n = count(*t);
        if (!n)
            return err("service " + cmd + ": --timeout needs a number of seconds, not '" + *t + "'",
                       2);
        req["timeout"] = *n;
        wait_s = *n + 5;
    }
    auto r = system_request(req);
    if (!r) return err(r.error().str());
    std::string state = (*r)["service"]["state"].get<std::string>();
    // The request only sets things in motion; say how it ended, as a user expects of a
    // start or stop. A service that will not reach it within the wait is reported as is.
    auto settled = [&](const std::string& st) {
        if (cmd == "stop") return st != "stopping";
        if (cmd == "disable") return st != "stopping";
        if (cmd == "enable" || cmd == "start" || cmd == "restart")
            // "restarting" after a start means it failed and will try again: wait for the
            // retries to end in running, or in failed once the restart limit is reached.
            return st != "stopping" && st != "starting" && st != "stopped" && st != "waiting" &&
                   st != "restarting";
        return true;
    };
    json last = (*r)["service"];
    for (int i = 0; !settled(state) && i < wait_s * 20; ++i) {
        ::usleep(50 * 1000);
        auto st = system_request({{"cmd", "status"}, {"name", name}});
        if (!st) break;
        last = (*st)["service"];
        state = last["state"].get<std::string>();
        if (state == "disabled" && cmd == "enable") break;
    }
    bool bad = state == "failed" || state == "invalid" ||
               (state == "restarting" && cmd != "stop" && cmd != "disable");
    std::string why = last.value("error", std::string());
    if (why.empty()) why = last.value("last_exit", std::string());
    if (bad && !why.empty())
        std::printf("%s: %s (%s; keel service logs %s)\n", name.c_str(), state.c_str(), why.c_str(),
                    name.c_str());
    else
        std::printf("%s: %s\n", name.c_str(), state.c_str());
    return bad ? 1 : 0;
}

int service_main(const std::vector<std::string>& argv) {
    auto top = Options::parse({"service", {{"help", "h"}}, true}, argv);
    if (!top) return err("service: " + top.error().str(), 2);
    const std::vector<std::string>& args = top->positional();
    if (args.empty() || top->flag("help") || args[0] == "help") {
        bool asked = top->flag("help") || !args.empty();
        std::fputs(kServiceUsage, asked ? stdout : stderr);
        return asked ? 0 : 2;
    }
    std::string cmd = args[0];
    auto a =
        Options::parse(service_verb(cmd), std::vector<std::string>(args.begin() + 1, args.end()));
    if (!a) return err("service " + cmd + ": " + a.error().str(), 2);
    if (cmd == "list") return list_services(*a);
    if (a->positional().size() != 1)
        return err(fmt::format("service {} needs one service name", cmd), 2);
    std::string name = a->positional()[0];
    json req = {{"cmd", cmd}, {"name", name}};
    if (cmd == "status") return show_status(*a, name, req);
    if (cmd == "logs") return show_logs(*a, name, req);
    if (cmd == "start" || cmd == "stop" || cmd == "restart" || cmd == "enable" || cmd == "disable")
        return change_state(*a, cmd, name, req);
    return err(fmt::format("unknown service command '{}'\n{}", cmd, kServiceUsage), 2);
}

int os_main(const std::vector<std::string>& argv) {
    auto a = Options::parse({"os", {{"help", "h"}}}, argv);
    if (!a) return err("os: " + a.error().str(), 2);
    const std::vector<std::string>& args = a->positional();
    std::string cmd = a->flag("help") ? "--help" : args.empty() ? "" : args[0];
    if (cmd == "version") {
        std::printf("keel %s\n", KEEL_VERSION);
        if (FILE* f = std::fopen("/etc/keel-release", "r")) {
            char line[256];
            while (std::fgets(line, sizeof line, f))
                std::fputs(line, stdout);
            std::fclose(f);
        }
        return 0;
    }
    if (cmd == "poweroff" || cmd == "reboot") {
        auto r = system_request({{"cmd", cmd}});
        if (!r) return err(r.error().str());
        return 0;
    }
    std::fputs("usage: keel os version|poweroff|reboot\n",
               cmd.empty() || cmd == "--help" ? stdout : stderr);
    return cmd == "--help" ? 0 : 2;
}

} // namespace keel::cli
