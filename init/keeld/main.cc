#include "keeld/main.h"

#include <fcntl.h>
#include <unistd.h>

#include <cstdio>
#include <cstring>
#include <string>

#include "common/contract.h"
#include "common/fd.h"
#include "common/log.h"
#include "config/kernel_args.h"
#include "keeld/daemon.h"
#include "runtime/container.h"

namespace keel::keeld {

int keeld_main(int argc, char** argv) noexcept {
    try {
        DaemonConfig cfg;
        bool dirs_given = false, state_given = false;
        for (int i = 1; i < argc; ++i) {
            std::string a = argv[i];
            auto val = [&](const char* opt) -> const char* {
                size_t n = std::strlen(opt);
                if (a.compare(0, n, opt) == 0 && a.size() > n && a[n] == '=')
                    return argv[i] + n + 1;
                if (a == opt && i + 1 < argc) return argv[++i];
                return nullptr;
            };
            if (const char* v = val("--instance"))
                cfg.instance = v;
            else if (const char* v2 = val("--services")) {
                // Given once or more, the directories replace the defaults.
                if (!dirs_given) cfg.services_dirs.clear();
                dirs_given = true;
                cfg.services_dirs.push_back(v2);
            } else if (const char* v3 = val("--state")) {
                cfg.state_dir = v3;
                state_given = true;
            } else if (const char* v4 = val("--socket"))
                cfg.socket = v4;
            else if (const char* v5 = val("--images"))
                cfg.ctx.images_dir = v5;
            else if (const char* v6 = val("--seccomp"))
                cfg.ctx.seccomp_profile = v6;
            else {
                std::fprintf(stderr, "keeld: unknown option %s\n", argv[i]);
                return 2;
            }
        }
        if (cfg.instance == "user") {
            // The user runtime: no service files; workloads come over its socket. Its state
            // is the user-runtime service's bind of /var/lib/keel/user, its socket directory
            // the bind of /run/keel/user (the host links /run/keel/user.sock there).
            if (!dirs_given) cfg.services_dirs.clear();
            if (!state_given) cfg.state_dir = "/var/lib/keel/user";
            if (cfg.socket.empty()) cfg.socket = "/run/keel/user/user.sock";
            cfg.ctx.cgroup_prefix = "workloads/";
        } else if (cfg.instance != "system") {
            std::fprintf(stderr, "keeld: --instance is system or user, not %s\n",
                         cfg.instance.c_str());
            return 2;
        }
        cfg.ctx.state_dir = cfg.state_dir;
        log::set_prefix(cfg.instance == "user" ? "keeld-user" : "keeld");
        // CVE-2019-5736: containers must never reach this binary for writing.
        if (auto s = runtime::reexec_from_sealed_memfd(argv); !s) log::warn("{}", s.error().str());
        // PID 1 hands us its notify pipe as fd 3.
        if (::fcntl(contract::kNotifyFd, F_GETFD) >= 0) {
            cfg.notify_fd = contract::kNotifyFd;
            ::fcntl(contract::kNotifyFd, F_SETFD, FD_CLOEXEC);
        }
        if (cfg.instance == "system") read_file("/proc/cmdline", cfg.cmdline);
        if (config::parse_kernel_args(cfg.cmdline).debug) log::set_debug(true);
        Daemon d(cfg);
        return d.run();
    } catch (const std::exception& e) {
        std::fprintf(stderr, "keeld: %s\n", e.what());
    } catch (...) {
        std::fprintf(stderr, "keeld: unexpected error\n");
    }
    return 1;
}

} // namespace keel::keeld
