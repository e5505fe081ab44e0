// keel-init: boot stages in order, each printed with its time; then the supervision loop.
#include "pid1/init.h"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/reboot.h>
#include <sys/signalfd.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdlib>
#include <cstring>
#include <exception>
#include <functional>

#include <fmt/format.h>
#include <yaml-cpp/yaml.h>

#include "common/contract.h"
#include "common/fd.h"
#include "config/config.h"
#include "config/kernel_args.h"
#include "pid1/boot.h"
#include "pid1/supervisor.h"
#include "pid1/sysctl.h"

namespace keel::pid1 {

namespace {

const char* kConfigDir = "/etc/keel";
const char* kOverlay = "/var/lib/keel/config.yml";
const char* kLastGood = "/var/lib/keel/config.last-good.yml";

class Console {
  public:
    explicit Console(Sys& sys) : sys_(sys), start_(sys.now_ms()) {}
    int64_t start() const { return start_; }
    void stage(const std::string& name, const std::string& what) noexcept {
        try {
            sys_.print(fmt::format("keel: [{:>5} ms] {}: {}", sys_.now_ms() - start_, name, what));
        } catch (...) {
        }
    }

  private:
    Sys& sys_;
    int64_t start_;
};

// The kernel starts init with the console on 0-2 only when /dev/console existed in the
// initramfs; otherwise open it now, once devtmpfs is there.
void ensure_console() noexcept {
    if (::fcntl(1, F_GETFD) >= 0) return;
    int fd = ::open("/dev/console", O_RDWR | O_NOCTTY);
    if (fd < 0) return;
    for (int i = 0; i < 3; ++i)
        if (fd != i) ::dup2(fd, i);
    if (fd > 2) ::close(fd);
}

std::string read_text(const std::string& path) {
    std::string s;
    read_file(path.c_str(), s);
    return s;
}

// The configuration: defaults, the overlay on the state partition, the command line. A broken
// overlay never bricks the box: the error is printed with its line, the last good copy is
// used, and the broken file is kept for the user to fix. Returns the effective hostname, and
// the user runtime's host id in `user_host_id`.
std::string load_config(Console& con, const std::map<std::string, std::string>& overrides,
                        uid_t& user_host_id) {
    auto cfg = config::load(kOverlay, kLastGood, overrides);
    for (const auto& w : cfg.warnings)
        con.stage("config", "ignored " + w);
    if (!cfg.error.empty()) {
        con.stage("config", "ERROR " + cfg.error);
        con.stage("config",
                  cfg.source == "last good"
                      ? std::string("booting with the last good configuration ") + kLastGood
                      : "booting with the built-in defaults (no last good configuration)");
    } else if (cfg.source == "overlay") {
        std::string text;
        read_file(kOverlay, text);
        if (!write_file_atomic(kLastGood, text, 0600))
            con.stage("config", sys_error(std::string("save ") + kLastGood).str());
        con.stage("config", std::string("defaults + ") + kOverlay);
    } else {
        con.stage("config", "defaults (no overlay)");
    }
    if (auto id = config::get(cfg.effective, "user_runtime.host_id"))
        user_host_id = id->as<uid_t>();
    auto host = config::get(cfg.effective, "hostname");
    return host ? host->as<std::string>() : "keel";
}

void block_signals(sigset_t& set) {
    sigemptyset(&set);
    for (int s : {SIGCHLD, contract::kPid1Terminate, contract::kPid1Reboot, SIGUSR1,
                  contract::kPid1Poweroff, SIGHUP, contract::kPid1PowerFail, SIGQUIT})
        sigaddset(&set, s);
    ::sigprocmask(SIG_BLOCK, &set, nullptr);
}

} // namespace

int init_main(int argc, char** argv) noexcept {
    bool test = false;
    for (int i = 1; i < argc; ++i)
        if (std::strcmp(argv[i], "--test") == 0) test = true;
    RealSys sys;
    if (::getpid() != 1 && !test) {
        sys.print("keel init: must run as PID 1 (use --test for a test run in fresh namespaces)");
        return 1;
    }
    sigset_t sigs;
    block_signals(sigs);
    if (!test) ::reboot(RB_DISABLE_CAD); // Ctrl-Alt-Del becomes kPid1Reboot: an orderly reboot
    ::umask(022);
    ::setenv("PATH", "/usr/sbin:/usr/bin:/sbin:/bin", 1);

    Console con(sys);
    std::string fatal;
    config::KernelArgs cmd;
    SupervisorConfig cfg;
    try {
        Status m = boot::mount_early();
        ensure_console();
        sys.print(
            fmt::format("keel: init {} starting{}", KEEL_VERSION, test ? " (test mode)" : ""));
        // Not fatal: without it the runtime copies itself to a sealed memfd instead.
        Status ro = m && !test ? boot::protect_binary() : Status{};
        con.stage("mounts", m ? std::string("proc sys dev run tmp cgroup2") +
                                    (test ? ""
                                     : ro ? "; keel binary read-only"
                                          : "; " + ro.error().str())
                              : m.error().str());
        if (!m) fatal = "mounting the pseudo-filesystems failed: " + m.error().str();

        const char* env_cmdline = test ? std::getenv("KEEL_CMDLINE") : nullptr;
        cmd = config::parse_kernel_args(env_cmdline ? env_cmdline : read_text("/proc/cmdline"));
        con.stage("cmdline",
                  fmt::format("state={} debug={} recovery={}{}",
                              cmd.state_label.value_or("KEEL_STATE"), cmd.debug, cmd.recovery,
                              cmd.unknown_keel.empty()
                                  ? ""
                                  : " (ignored: " +
                                        fmt::format("{}", fmt::join(cmd.unknown_keel, " ")) + ")"));

        if (test) {
            con.stage("modules", "skipped (test mode)");
            con.stage("sysctl", "skipped (test mode)");
        } else {
            std::string origin = std::string(kConfigDir) + "/modules.yml";
            auto list = config::modules::parse_allow_list(read_text(origin), origin);
            if (!list) {
                con.stage("modules", "ERROR " + list.error().str() + "; no modules loaded");
                list = config::modules::AllowList{};
            }
            auto rep = boot::load_modules(*list);
            con.stage("modules",
                      fmt::format("loaded {}: {}", rep.loaded.size(), fmt::join(rep.loaded, " ")));
            for (const auto& m2 : rep.missing)
                con.stage("modules", "not found: " + m2);
            if (cmd.debug)
                for (const auto& [name, us] : rep.load_us)
                    con.stage("modules", fmt::format("{}: {} us", name, us));
            for (const auto& f : rep.failed)
                con.stage("modules", "failed: " + f);
            bool lock = list->lock && cmd.config.count("modules.lock") == 0;
            if (cmd.config.count("modules.lock") && cmd.config["modules.lock"] != "false")
                lock = true;
            if (lock) {
                Status l = boot::lock_modules();
                con.stage("modules",
                          l ? "locked (kernel.modules_disabled=1)" : "ERROR " + l.error().str());
            }

            std::string sorigin = std::string(kConfigDir) + "/sysctl.yml";
            auto prof = config::sysctl::parse_profile(read_text(sorigin), sorigin);
            if (!prof) {
                con.stage("sysctl", "ERROR " + prof.error().str());
            } else {
                auto out = sysctl::apply(*prof);
                con.stage("sysctl", fmt::format("applied {} of {}", out.applied, out.attempted));
                for (const auto& f : out.failures)
                    con.stage("sysctl", "not applied: " + f);
            }
        }

        std::string hostname = cmd.config.count("hostname") ? cmd.config["hostname"] : "keel";
        Status h = boot::set_hostname(hostname);
        Status lo = boot::loopback_up();
        con.stage("network",
                  fmt::format("hostname {}{}; lo {}", hostname,
                              h ? "" : " (" + h.error().str() + ")", lo ? "up" : lo.error().str()));

        if (test) {
            con.stage("state", "test mode: /var/lib/keel not mounted");
        } else {
            auto dev = boot::mount_state(cmd.state_label.value_or("KEEL_STATE"));
            if (dev) {
                con.stage("state", fmt::format("{} mounted on /var/lib/keel", *dev));
            } else {
                Status t = boot::mount_state_tmpfs();
                con.stage("state",
                          fmt::format("{}: using a tmpfs, STATE WILL NOT PERSIST{}",
                                      dev.error().str(), t ? "" : " (" + t.error().str() + ")"));
            }
            uid_t user_host_id = 100000;
            std::string configured = load_config(con, cmd.config, user_host_id);
            if (dev) {
                // Before keeld starts the user runtime: its share of the partition is bounded
                // from its first write. Without the bound the box still boots, and says so.
                Status q = boot::bound_user_state(*dev, user_host_id);
                con.stage("state",
                          q ? "/var/lib/keel/user bounded by a project quota (blocks and inodes)"
                            : "WARNING: /var/lib/keel/user is NOT bounded: " + q.error().str() +
                                  " (make the state filesystem with mkfs.ext4 -O quota,project)");
            }
            if (configured != hostname) {
                Status h2 = boot::set_hostname(configured);
                con.stage("network",
                          "hostname " + configured + (h2 ? "" : " (" + h2.error().str() + ")"));
            }
        }
    } catch (const std::exception& e) {
        fatal = std::string("boot: ") + e.what();
    } catch (...) {
        fatal = "boot: unexpected error";
    }

    // Recovery: a root shell on the console takes keeld's place, under the same supervision
    // (respawned when it exits; poweroff and reboot still go through the ordered shutdown).
    bool recovery = cmd.recovery || !fatal.empty();
    if (recovery) {
        std::string reason = cmd.recovery ? "keel.recovery on the kernel command line" : fatal;
        sys.print("keel: RECOVERY: " + reason);
        sys.print("keel: RECOVERY: a root shell on the console replaces keeld; `poweroff` or "
                  "`reboot` to leave");
        // cttyhack opens the real console tty (ttyS0, tty1) as the controlling terminal, so job
        // control and Ctrl-C work in the shell.
        cfg.keeld_argv = {"/bin/busybox", "cttyhack", "/bin/sh", "-l"};
        cfg.env = {"PATH=/usr/sbin:/usr/bin:/sbin:/bin", "HOME=/root", "TERM=linux",
                   "PS1=recovery# "};
        cfg.backoff_max_ms = 1000;
        cfg.keeld_stop_signal = SIGHUP;
    }

    cfg.boot_start_ms = con.start();
    cfg.call_reboot = !test;
    if (test)
        cfg.system_cgroup = "/run/keel/test-system-cgroup"; // the dev host's cgroups are not ours
    int notify[2];
    if (::pipe2(notify, O_CLOEXEC | O_NONBLOCK) < 0) notify[0] = notify[1] = -1;
    Supervisor sup(sys, cfg);
    con.stage(recovery ? "recovery" : "keeld",
              "starting " + fmt::format("{}", fmt::join(cfg.keeld_argv, " ")));
    sup.start_keeld(notify[1]);

    Fd sigfd(::signalfd(-1, &sigs, SFD_CLOEXEC | SFD_NONBLOCK));
    std::string notify_buf;
    for (;;) {
        try {
            pollfd fds[2] = {{sigfd.get(), POLLIN, 0}, {notify[0], POLLIN, 0}};
            int64_t t = sup.timeout_ms();
            ::poll(fds, 2, t < 0 ? -1 : static_cast<int>(std::min<int64_t>(t, 60000)));
            signalfd_siginfo si{};
            while (::read(sigfd.get(), &si, sizeof si) == sizeof si) {
                switch (si.ssi_signo) {
                case SIGCHLD:
                    break; // reaped below, every time round
                case contract::kPid1Terminate:
                case contract::kPid1Poweroff:
                case contract::kPid1PowerFail:
                    sup.request(Action::poweroff);
                    break;
                case contract::kPid1Reboot:
                    sup.request(Action::reboot);
                    break;
                default:
                    break;
                }
            }
            char buf[256];
            for (ssize_t n; (n = ::read(notify[0], buf, sizeof buf)) > 0;) {
                notify_buf.append(buf, static_cast<size_t>(n));
                for (size_t nl; (nl = notify_buf.find('\n')) != std::string::npos;
                     notify_buf.erase(0, nl + 1))
                    if (notify_buf.compare(0, nl, contract::kReady) == 0) sup.on_ready();
            }
            sup.reap_all();
            sup.tick();
            if (sup.phase() == Phase::done) {
                if (test) return 0;
                ::sleep(1); // reboot(2) failed and said so; keep reaping
            }
        } catch (const std::exception& e) {
            sys.print(std::string("keel: init loop: ") + e.what());
        } catch (...) {
            sys.print("keel: init loop: unexpected error");
        }
    }
}

} // namespace keel::pid1
