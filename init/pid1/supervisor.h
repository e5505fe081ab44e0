// PID 1's running state machine: supervises keeld (restart with backoff, kill what its
// containers left), reaps every child and orphan, and shuts down in order. It never throws
// and never exits; all its effects go through the Sys seam.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "common/contract.h"
#include "pid1/sys.h"

namespace keel::pid1 {

enum class Action { none, poweroff, reboot };
enum class Phase { running, stopping_keeld, terminating, killing, done };
const char* phase_name(Phase p);

struct SupervisorConfig {
    std::vector<std::string> keeld_argv = {"/usr/bin/keeld", "--instance=system"};
    std::vector<std::string> env = {"PATH=/usr/sbin:/usr/bin:/sbin:/bin"};
    std::string system_cgroup = "/sys/fs/cgroup/keel/system"; // cgroup.kill'ed when keeld dies
    int64_t boot_start_ms = 0;     // when init started, for "system ready in N ms"
    int64_t keeld_stop_ms = 10000; // keeld's time to stop its services
    int keeld_stop_signal =
        contract::kKeeldStop; // SIGHUP for the recovery shell, which ignores TERM
    int64_t term_ms = 5000;   // everyone's time after SIGTERM
    int64_t kill_ms = 2000;   // after SIGKILL, before unmounting anyway
    int64_t backoff_min_ms = 100, backoff_max_ms = 30000;
    int64_t stable_ms = 60000; // a keeld that ran this long restarts without delay growth
    int64_t ready_report_ms =
        60000; // a keeld not ready this long after its start is reported (0: never)
    // Never unmounted (the kernel's and our pseudo-filesystems are remounted read-only or left).
    std::vector<std::string> keep_mounts = {"/", "/proc", "/sys", "/dev"};
    bool call_reboot = true; // false in test mode: the machine ends in Phase::done instead
};

class Supervisor {
  public:
    Supervisor(Sys& sys, SupervisorConfig cfg) : sys_(sys), cfg_(std::move(cfg)) {}

    void start_keeld(int notify_fd) noexcept; // first start
    void on_ready() noexcept;                 // keeld wrote READY
    void reap_all() noexcept;                 // after SIGCHLD
    void tick() noexcept;                     // after timeout_ms() elapsed
    void request(Action a) noexcept;          // poweroff / reboot
    int64_t timeout_ms() const noexcept;      // until the next deadline, -1 when none

    Phase phase() const { return phase_; }
    Action action() const { return action_; }
    pid_t keeld_pid() const { return keeld_; }
    int keeld_starts() const { return starts_; }
    bool ready() const { return ready_; }
    uint64_t reaped() const { return reaped_; }

  private:
    void spawn_keeld() noexcept;
    void keeld_gone(int status) noexcept;
    void enter_terminating() noexcept;
    void enter_killing() noexcept;
    void finish() noexcept;

    Sys& sys_;
    SupervisorConfig cfg_;
    Phase phase_ = Phase::running;
    Action action_ = Action::none;
    int notify_fd_ = -1;
    pid_t keeld_ = -1;
    int starts_ = 0;
    bool ready_ = false;
    int64_t keeld_started_at_ = 0;
    int failures_ = 0;             // keeld restarts in a row, for the backoff
    int64_t restart_at_ = -1;      // pending keeld restart
    int64_t ready_report_at_ = -1; // "not ready after N s", once per keeld start
    int64_t deadline_ = -1;        // shutdown phase deadline
    uint64_t reaped_ = 0;
};

// "exited with 3", "killed by SIGKILL".
std::string describe_status(int status);

} // namespace keel::pid1
