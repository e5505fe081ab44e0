// `keel service ...` (and `ros service ...`): talks to keeld's system instance.
#include <unistd.h>

#include <cstdio>
#include <cstdlib>

#include <fmt/format.h>

#include "cli/args.h"
#include "cli/commands.h"
#include "keeld/protocol.h"

namespace keel::cli {

using nlohmann::json;

static const char* kServiceUsage = R"(usage: keel service COMMAND

  list [--json] [--ros]          services: ENABLED NAME STATE PID UPTIME RESTARTS
  status NAME [--json]           state, pid, last exit, capabilities, namespaces, recent log
  start|stop|restart NAME [-t SECONDS]
  enable|disable NAME            persisted in /var/lib/keel/config.yml, effective at once
  logs NAME [--lines N]          the service's recent output
)";

static int err(const std::string& msg, int code = 1) {
    std::fprintf(stderr, "keel: %s\n", msg.c_str());
    return code;
}

static std::string uptime(int64_t s) {
    if (s <= 0) return "-";
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

int service_main(const std::vector<std::string>& args) {
    if (args.empty() || args[0] == "--help" || args[0] == "-h" || args[0] == "help") {
        std::fputs(kServiceUsage, args.empty() ? stderr : stdout);
        return args.empty() ? 2 : 0;
    }
    std::string cmd = args[0];
    std::vector<std::string> rest(args.begin() + 1, args.end());
    auto a = Args::parse(rest, {{"json", 0, false}, {"ros", 0, false}, {"timeout", 't', true}, {"lines", 'n', true}});
    if (!a) return err("service " + cmd + ": " + a.error().str(), 2);

    if (cmd == "list") {
        auto r = system_request({{"cmd", "list"}});
        if (!r) return err(r.error().str());
        const json& all = (*r)["services"];
        if (a->flag("json")) {
            std::puts(all.dump().c_str());
            return 0;
        }
        if (a->flag("ros")) {
            for (const auto& s : all)
                std::printf("%-9s %s\n", s["enabled"].get<bool>() ? "enabled" : "disabled", s["name"].get<std::string>().c_str());
            return 0;
        }
        std::printf("%-9s %-14s %-11s %-7s %-8s %s\n", "ENABLED", "NAME", "STATE", "PID", "UPTIME", "RESTARTS");
        for (const auto& s : all) {
            int pid = s["pid"].get<int>();
            std::printf("%-9s %-14s %-11s %-7s %-8s %d\n", s["enabled"].get<bool>() ? "yes" : "no",
                        s["name"].get<std::string>().c_str(), s["state"].get<std::string>().c_str(),
                        pid ? std::to_string(pid).c_str() : "-", uptime(s["uptime_s"].get<int64_t>()).c_str(),
                        s["restarts"].get<int>());
            std::string e = s["error"].get<std::string>();
            if (!e.empty() && s["state"] != "running") std::printf("          %s\n", e.c_str());
        }
        return 0;
    }

    if (a->positional().size() != 1) return err(fmt::format("service {} needs one service name", cmd), 2);
    std::string name = a->positional()[0];
    json req = {{"cmd", cmd}, {"name", name}};
    if (cmd == "status") {
        auto r = system_request(req);
        if (!r) return err(r.error().str());
        const json& s = (*r)["service"];
        if (a->flag("json")) {
            std::puts(s.dump().c_str());
            return 0;
        }
        std::printf("%s: %s%s\n", name.c_str(), s["state"].get<std::string>().c_str(),
                    s["enabled"].get<bool>() ? " (enabled)" : " (disabled)");
        if (s["pid"].get<int>()) std::printf("  pid:           %d, up %s\n", s["pid"].get<int>(), uptime(s["uptime_s"].get<int64_t>()).c_str());
        std::printf("  restarts:      %d\n", s["restarts"].get<int>());
        if (!s["last_exit"].get<std::string>().empty()) std::printf("  last exit:     %s\n", s["last_exit"].get<std::string>().c_str());
        if (!s["error"].get<std::string>().empty()) std::printf("  reason:        %s\n", s["error"].get<std::string>().c_str());
        auto list = [](const json& j) {
            std::string out;
            for (const auto& x : j) out += (out.empty() ? "" : " ") + x.get<std::string>();
            return out.empty() ? std::string("none") : out;
        };
        if (s.contains("image")) {
            std::printf("  image:         %s\n", s["image"].get<std::string>().c_str());
            std::printf("  user:          %s\n", s["user"].get<std::string>().c_str());
            std::printf("  capabilities:  %s\n", list(s["capabilities"]).c_str());
            std::printf("  host ns:       %s\n", list(s["host_namespaces"]).c_str());
            std::printf("  resources:     %s\n", s["resources"].empty() ? "no limits" : s["resources"].dump().c_str());
            std::printf("  recent log:\n");
            for (const auto& l : s["log"]) std::printf("    %s\n", l.get<std::string>().c_str());
        }
        return 0;
    }
    if (cmd == "logs") {
        req["lines"] = std::stoi(a->value_or("lines", "50"));
        auto r = system_request(req);
        if (!r) return err(r.error().str());
        for (const auto& l : (*r)["lines"]) std::puts(l.get<std::string>().c_str());
        return 0;
    }
    if (cmd == "start" || cmd == "stop" || cmd == "restart" || cmd == "enable" || cmd == "disable") {
        if (auto t = a->value("timeout")) req["timeout"] = std::stoi(*t);
        auto r = system_request(req);
        if (!r) return err(r.error().str());
        std::printf("%s: %s\n", name.c_str(), (*r)["service"]["state"].get<std::string>().c_str());
        return 0;
    }
    return err(fmt::format("unknown service command '{}'\n{}", cmd, kServiceUsage), 2);
}

int os_main(const std::vector<std::string>& args) {
    std::string cmd = args.empty() ? "" : args[0];
    if (cmd == "version") {
        std::printf("keel %s\n", KEEL_VERSION);
        if (FILE* f = std::fopen("/etc/keel-release", "r")) {
            char line[256];
            while (std::fgets(line, sizeof line, f)) std::fputs(line, stdout);
            std::fclose(f);
        }
        return 0;
    }
    if (cmd == "poweroff" || cmd == "reboot") {
        auto r = system_request({{"cmd", cmd}});
        if (!r) return err(r.error().str());
        return 0;
    }
    std::fputs("usage: keel os version|poweroff|reboot\n", cmd.empty() || cmd == "--help" ? stdout : stderr);
    return cmd == "--help" ? 0 : 2;
}

} // namespace keel::cli
