#include <cstdio>
#include <exception>
#include <string>
#include <vector>

#include <fmt/format.h>

#include "cli/cli.h"
#include "cli/commands.h"
#include "cli/runtime_cmd.h"
#include "common/strings.h"

namespace keel::cli {

static const char* kUsage = R"(usage: keel COMMAND [ARGS]

  service ...   system services: list, status, start, stop, restart, enable, disable, logs
  config ...    the system configuration: get, set, validate, export, keys
  run ...       a workload in the user runtime: keel run --help
  ps [-a]       workloads; also: stop, kill [-s SIG], rm [-f], logs [-f] NAME,
                exec NAME COMMAND...
  image ...     workload images: import FILE, list [--json], rm NAME...
  audit [-v]    the host, every service and workload against Keel's hardening
  os ...        version, poweroff, reboot
  runtime ...   the OCI runtime (runc-compatible subset); see keel runtime --help
  info          each runtime daemon's pid, memory and container count (JSON lines)
  version       print the Keel version
)";

static int dispatch(int argc, char** argv) {
    std::vector<std::string> args(argv + 1, argv + argc);
    if (args.empty() || args[0] == "help" || args[0] == "--help" || args[0] == "-h") {
        std::fputs(kUsage, args.empty() ? stderr : stdout);
        return args.empty() ? 2 : 0;
    }
    std::string cmd = args[0];
    std::vector<std::string> rest(args.begin() + 1, args.end());
    if (cmd == "runtime") return runtime_main(rest, argv);
    if (cmd == "service") return service_main(rest);
    if (cmd == "config") return config_main(rest);
    if (cmd == "run") return run_main(rest);
    if (cmd == "exec") return exec_main(rest);
    if (cmd == "image" || cmd == "images")
        return image_main(cmd == "images" ? std::vector<std::string>{"list"} : rest);
    if (cmd == "info") {
        // Each runtime daemon's own footprint, as JSON lines (scripts/bench-*).
        int rc = 0;
        for (bool user : {false, true}) {
            auto r = user ? user_request({{"cmd", "info"}}) : system_request({{"cmd", "info"}});
            if (r)
                std::puts(r->dump().c_str());
            else
                rc = 1;
        }
        return rc;
    }
    if (cmd == "ps" || cmd == "stop" || cmd == "kill" || cmd == "rm" || cmd == "logs")
        return workload_main(cmd, rest);
    if (cmd == "os") return os_main(rest);
    if (cmd == "audit") return audit_main(rest);
    if (cmd == "version" || cmd == "--version") {
        std::printf("keel %s\n", KEEL_VERSION);
        return 0;
    }
    std::string near = closest(cmd, {"runtime", "service", "config", "run", "exec", "image",
                                     "audit", "ps", "stop", "kill", "rm", "logs", "os", "version"});
    std::fprintf(stderr, "keel: unknown command '%s'%s\n%s", cmd.c_str(),
                 near.empty() ? "" : fmt::format(" (did you mean '{}'?)", near).c_str(), kUsage);
    return 2;
}

int main(int argc, char** argv) noexcept {
    try {
        return dispatch(argc, argv);
    } catch (const std::exception& e) {
        std::fprintf(stderr, "keel: %s\n", e.what());
    } catch (...) {
        std::fprintf(stderr, "keel: unexpected error\n");
    }
    return 125;
}

} // namespace keel::cli
