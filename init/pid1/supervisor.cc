#include "pid1/supervisor.h"

#include <signal.h>
#include <sys/reboot.h>
#include <sys/wait.h>

#include <algorithm>
#include <cstring>

#include <fmt/format.h>

#include "common/backoff.h"
#include "common/signals.h"

namespace keel::pid1 {

const char* phase_name(Phase p) {
    switch (p) {
    case Phase::running:
        return "running";
    case Phase::stopping_keeld:
        return "stopping-keeld";
    case Phase::terminating:
        return "terminating";
    case Phase::killing:
        return "killing";
    case Phase::done:
        return "done";
    }
    return "?";
}

std::string describe_status(int status) {
    if (WIFEXITED(status)) return fmt::format("exited with {}", WEXITSTATUS(status));
    if (WIFSIGNALED(status)) {
        return fmt::format("killed by SIG{}", signal_name(WTERMSIG(status)));
    }
    return fmt::format("status {:#x}", status);
}

// Every entry point catches everything: an allocation failure while formatting a message
// must not take PID 1 down. The message is then simply lost.
#define NOEXCEPT_BODY(...)                                                                         \
    try {                                                                                          \
        __VA_ARGS__                                                                                \
    } catch (...) {                                                                                \
    }

void Supervisor::start_keeld(int notify_fd) noexcept {
    notify_fd_ = notify_fd;
    failures_ = 0;
    spawn_keeld();
}

void Supervisor::spawn_keeld() noexcept {
    NOEXCEPT_BODY({
        restart_at_ = -1;
        pid_t pid = sys_.spawn(cfg_.keeld_argv, cfg_.env, notify_fd_);
        ++starts_;
        keeld_started_at_ = sys_.now_ms();
        if (pid < 0) {
            sys_.print(
                fmt::format("keel: cannot start {}: {}", cfg_.keeld_argv[0], std::strerror(-pid)));
            keeld_ = -1;
            restart_at_ = sys_.now_ms() +
                          backoff_delay(++failures_, cfg_.backoff_min_ms, cfg_.backoff_max_ms);
            return;
        }
        keeld_ = pid;
        if (!ready_ && cfg_.ready_report_ms > 0)
            ready_report_at_ = keeld_started_at_ + cfg_.ready_report_ms;
        if (starts_ > 1)
            sys_.print(fmt::format("keel: keeld restarted (pid {}, start {})", pid, starts_));
    })
}

void Supervisor::on_ready() noexcept {
    NOEXCEPT_BODY({
        if (phase_ != Phase::running) return;
        if (!ready_)
            sys_.print(
                fmt::format("keel: system ready in {} ms", sys_.now_ms() - cfg_.boot_start_ms));
        else
            sys_.print("keel: keeld ready again");
        ready_ = true;
    })
}

void Supervisor::keeld_gone(int status) noexcept {
    NOEXCEPT_BODY({
        keeld_ = -1;
        ready_report_at_ = -1; // the next start has its own
        if (phase_ == Phase::stopping_keeld) {
            sys_.print(fmt::format("keel: shutdown: keeld stopped ({})", describe_status(status)));
            enter_terminating();
            return;
        }
        if (phase_ != Phase::running) return;
        sys_.print(fmt::format("keel: keeld {}; stopping what is left of its containers",
                               describe_status(status)));
        // The containers keeld supervised have lost their supervisor: kill them all, so the
        // new keeld starts from a clean slate instead of adopting half-known state.
        sys_.write_file(cfg_.system_cgroup + "/cgroup.kill", "1");
        int64_t now = sys_.now_ms();
        if (now - keeld_started_at_ >= cfg_.stable_ms) failures_ = 0;
        int64_t delay = backoff_delay(++failures_, cfg_.backoff_min_ms, cfg_.backoff_max_ms);
        restart_at_ = now + delay;
        sys_.print(fmt::format("keel: restarting keeld in {} ms", delay));
    })
}

void Supervisor::reap_all() noexcept {
    for (;;) {
        int status = 0;
        pid_t pid = sys_.reap(&status);
        if (pid == 0) return;
        if (pid < 0) {
            // No children at all: during shutdown that means everyone is gone.
            if (phase_ == Phase::terminating || phase_ == Phase::killing) finish();
            return;
        }
        ++reaped_;
        if (pid == keeld_) keeld_gone(status);
    }
}

void Supervisor::tick() noexcept {
    int64_t now = sys_.now_ms();
    if (phase_ == Phase::running && restart_at_ >= 0 && now >= restart_at_) spawn_keeld();
    if (phase_ == Phase::running && !ready_ && ready_report_at_ >= 0 && now >= ready_report_at_) {
        ready_report_at_ = -1;
        NOEXCEPT_BODY(sys_.print(
            fmt::format("keel: keeld has not reported ready {} s after its start; the services "
                        "it still waits for are in its boot lines and in keel service list",
                        cfg_.ready_report_ms / 1000));)
    }
    if (deadline_ < 0 || now < deadline_) return;
    switch (phase_) {
    case Phase::stopping_keeld:
        NOEXCEPT_BODY(sys_.print("keel: shutdown: keeld did not stop in time");)
        enter_terminating();
        break;
    case Phase::terminating:
        enter_killing();
        break;
    case Phase::killing:
        finish();
        break;
    default:
        break;
    }
}

void Supervisor::request(Action a) noexcept {
    NOEXCEPT_BODY({
        if (phase_ != Phase::running) {
            sys_.print("keel: already shutting down");
            return;
        }
        action_ = a;
        restart_at_ = -1;
        sys_.print(fmt::format("keel: {} requested", a == Action::reboot ? "reboot" : "poweroff"));
        if (keeld_ > 0) {
            sys_.print("keel: shutdown: stopping keeld and its services");
            phase_ = Phase::stopping_keeld;
            sys_.kill(keeld_, cfg_.keeld_stop_signal);
            deadline_ = sys_.now_ms() + cfg_.keeld_stop_ms;
        } else {
            enter_terminating();
        }
    })
}

void Supervisor::enter_terminating() noexcept {
    NOEXCEPT_BODY(sys_.print("keel: shutdown: sending SIGTERM to all processes");)
    phase_ = Phase::terminating;
    sys_.kill(-1, SIGTERM);
    sys_.kill(-1, SIGCONT);
    deadline_ = sys_.now_ms() + cfg_.term_ms;
    reap_all();
}

void Supervisor::enter_killing() noexcept {
    NOEXCEPT_BODY(sys_.print("keel: shutdown: sending SIGKILL to all processes");)
    phase_ = Phase::killing;
    sys_.kill(-1, SIGKILL);
    deadline_ = sys_.now_ms() + cfg_.kill_ms;
    reap_all();
}

void Supervisor::finish() noexcept {
    if (phase_ == Phase::done) return;
    phase_ = Phase::done;
    deadline_ = -1;
    NOEXCEPT_BODY({
        sys_.print("keel: shutdown: syncing filesystems");
        sys_.sync();
        auto mounts = sys_.mount_points();
        // Reverse mount order: children before parents.
        for (auto it = mounts.rbegin(); it != mounts.rend(); ++it) {
            const std::string& m = *it;
            bool keep = std::find(cfg_.keep_mounts.begin(), cfg_.keep_mounts.end(), m) !=
                            cfg_.keep_mounts.end() ||
                        m.rfind("/proc/", 0) == 0 || m.rfind("/sys/", 0) == 0 ||
                        m.rfind("/dev/", 0) == 0;
            if (keep) continue;
            int err = sys_.unmount(m);
            if (err == 0) {
                sys_.print(fmt::format("keel: shutdown: unmounted {}", m));
            } else if (err != EINVAL && err != ENOENT) {
                // Busy: make it read-only, so nothing more can be lost.
                int r = sys_.remount_readonly(m);
                sys_.print(fmt::format("keel: shutdown: {} busy ({}), remounted read-only{}", m,
                                       strerrorname_np(err) ? strerrorname_np(err) : "?",
                                       r ? " failed" : ""));
            }
        }
        sys_.sync();
        sys_.print(fmt::format("keel: shutdown: {}",
                               action_ == Action::reboot ? "rebooting" : "powering off"));
    })
    if (cfg_.call_reboot) {
        int err = sys_.reboot(action_ == Action::reboot ? RB_AUTOBOOT : RB_POWER_OFF);
        // reboot(2) does not return when it works, except as PID 1 of a PID namespace.
        if (err != 0)
            NOEXCEPT_BODY(
                sys_.print(fmt::format("keel: reboot(2) failed: {}", std::strerror(err)));)
    }
}

int64_t Supervisor::timeout_ms() const noexcept {
    int64_t next = -1;
    for (int64_t t : {restart_at_, deadline_, ready_ ? int64_t(-1) : ready_report_at_})
        if (t >= 0 && (next < 0 || t < next)) next = t;
    if (next < 0) return -1;
    return std::max<int64_t>(0, next - sys_.now_ms());
}

} // namespace keel::pid1
