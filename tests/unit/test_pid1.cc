// PID 1 without root, a VM or timing luck: the Supervisor runs against FakeSys (the Sys seam),
// which owns the clock, the process table and the mount table; plus the pure boot-stage logic
// (kernel command line, module ordering, the sysctl profile).
#include <signal.h>
#include <sys/reboot.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <deque>
#include <filesystem>
#include <map>
#include <set>
#include <string>
#include <vector>

#include <catch2/catch.hpp>

#include "common/fd.h"
#include "pid1/cmdline.h"
#include "pid1/modules.h"
#include "pid1/supervisor.h"
#include "pid1/sys.h"
#include "pid1/sysctl.h"

using namespace keel::pid1;

namespace {

int exited(int code) {
    return (code & 0xff) << 8;
}
int killed(int sig) {
    return sig & 0x7f;
}

// The kernel as PID 1 sees it. Children are either alive or exited-and-waiting; reap() hands
// out the exited ones in order, then says 0 while any child is alive, -1 when none is left.
// Every effect is also appended to `events`, so tests can assert the order across calls.
class FakeSys final : public Sys {
  public:
    // --- scripting -------------------------------------------------------------------------
    int64_t clock = 1000;
    std::deque<pid_t> spawn_results; // next spawn() results; empty: a fresh pid
    pid_t next_pid = 100;
    std::set<pid_t> alive;
    std::deque<std::pair<pid_t, int>> zombies;
    std::vector<std::string> mounts;           // in mount order
    std::map<std::string, int> unmount_errors; // path -> errno unmount() returns
    int reboot_result = 0;

    void advance(int64_t ms) { clock += ms; }
    void adopt(pid_t pid) { alive.insert(pid); } // an orphan reparented to us
    void exit_child(pid_t pid, int status) {
        REQUIRE(alive.erase(pid) == 1);
        zombies.emplace_back(pid, status);
    }
    void exit_all(int status) {
        for (pid_t p : alive)
            zombies.emplace_back(p, status);
        alive.clear();
    }

    // --- records ---------------------------------------------------------------------------
    struct Spawn {
        std::vector<std::string> argv, env;
        int notify_fd;
        int64_t at;
    };
    std::vector<Spawn> spawns;
    std::vector<std::pair<pid_t, int>> kills;
    std::vector<std::string> lines;
    std::vector<std::pair<std::string, std::string>> writes;
    std::vector<std::string> unmounts, remounts;
    std::vector<int> reboots;
    int syncs = 0;
    std::vector<std::string> events;

    // --- Sys -------------------------------------------------------------------------------
    pid_t spawn(const std::vector<std::string>& argv, const std::vector<std::string>& env,
                int notify_fd) noexcept override {
        spawns.push_back({argv, env, notify_fd, clock});
        pid_t pid;
        if (!spawn_results.empty()) {
            pid = spawn_results.front();
            spawn_results.pop_front();
        } else {
            pid = next_pid++;
        }
        if (pid > 0) alive.insert(pid);
        events.push_back("spawn " + std::to_string(pid));
        return pid;
    }
    pid_t reap(int* status) noexcept override {
        if (!zombies.empty()) {
            auto [pid, st] = zombies.front();
            zombies.pop_front();
            *status = st;
            return pid;
        }
        return alive.empty() ? -1 : 0;
    }
    int kill(pid_t pid, int sig) noexcept override {
        kills.emplace_back(pid, sig);
        events.push_back("kill " + std::to_string(pid) + " " + std::to_string(sig));
        return 0;
    }
    int64_t now_ms() noexcept override { return clock; }
    bool write_file(const std::string& path, const std::string& data) noexcept override {
        writes.emplace_back(path, data);
        events.push_back("write " + path + " " + data);
        return true;
    }
    void sync() noexcept override {
        ++syncs;
        events.push_back("sync");
    }
    std::vector<std::string> mount_points() noexcept override { return mounts; }
    int unmount(const std::string& path) noexcept override {
        auto it = unmount_errors.find(path);
        int err = it == unmount_errors.end() ? 0 : it->second;
        unmounts.push_back(path);
        events.push_back("unmount " + path + (err ? " " + std::to_string(err) : ""));
        return err;
    }
    int remount_readonly(const std::string& path) noexcept override {
        remounts.push_back(path);
        events.push_back("remount-ro " + path);
        return 0;
    }
    int reboot(int how) noexcept override {
        reboots.push_back(how);
        events.push_back("reboot " + std::to_string(how));
        return reboot_result;
    }
    void print(const std::string& line) noexcept override {
        lines.push_back(line);
        events.push_back("print " + line);
    }

    // --- queries ---------------------------------------------------------------------------
    size_t count_lines(const std::string& needle) const {
        return static_cast<size_t>(
            std::count_if(lines.begin(), lines.end(), [&](const std::string& l) {
                return l.find(needle) != std::string::npos;
            }));
    }
    std::vector<std::string> effects() const { // events without the console lines
        std::vector<std::string> out;
        for (const auto& e : events)
            if (e.rfind("print ", 0) != 0) out.push_back(e);
        return out;
    }
    std::vector<std::string> effects_since(size_t n) const {
        std::vector<std::string> out;
        for (size_t i = n; i < events.size(); ++i)
            if (events[i].rfind("print ", 0) != 0) out.push_back(events[i]);
        return out;
    }
};

SupervisorConfig test_config() {
    SupervisorConfig c;
    c.boot_start_ms = 1000;
    c.ready_report_ms = 0; // its own test below; the others never let keeld be ready
    return c;
}

const std::string kCgroupKill = "/sys/fs/cgroup/keel/system/cgroup.kill";

std::string kill_event(pid_t pid, int sig) {
    return "kill " + std::to_string(pid) + " " + std::to_string(sig);
}

// Drives the supervisor the way init.cc's loop does: sleep until timeout_ms(), then tick().
void run_until_deadline(FakeSys& sys, Supervisor& sup) {
    int64_t t = sup.timeout_ms();
    REQUIRE(t >= 0);
    sys.advance(t);
    sup.tick();
}

// keeld crashes right after it started (it ran 0 ms): returns the announced restart delay.
int64_t crash_keeld(FakeSys& sys, Supervisor& sup, int status = killed(SIGSEGV)) {
    size_t writes = sys.writes.size();
    sys.exit_child(sup.keeld_pid(), status);
    sup.reap_all();
    REQUIRE(sup.keeld_pid() == -1);
    // What its containers left is killed every time, before the next keeld starts.
    REQUIRE(sys.writes.size() == writes + 1);
    CHECK(sys.writes.back() == std::make_pair(kCgroupKill, std::string("1")));
    return sup.timeout_ms();
}

std::string temp_dir() {
    char tmpl[] = "/tmp/keel-pid1-XXXXXX";
    REQUIRE(::mkdtemp(tmpl) != nullptr);
    return tmpl;
}

std::string slurp(const std::string& path) {
    std::string s;
    REQUIRE(keel::read_file(path.c_str(), s));
    return s;
}

void touch(const std::string& path) {
    std::filesystem::create_directories(std::filesystem::path(path).parent_path());
    REQUIRE(keel::write_file_atomic(path, "", 0644, keel::Durability::volatile_));
}

} // namespace

// =============================================================================================
// Supervisor: start and ready

TEST_CASE("pid1: supervisor: keeld starts with its argv, env and notify fd") {
    FakeSys sys;
    auto cfg = test_config();
    Supervisor sup(sys, cfg);
    sup.start_keeld(7);
    REQUIRE(sys.spawns.size() == 1);
    CHECK(sys.spawns[0].argv == cfg.keeld_argv);
    CHECK(sys.spawns[0].env == cfg.env);
    CHECK(sys.spawns[0].notify_fd == 7);
    CHECK(sup.keeld_pid() == 100);
    CHECK(sup.keeld_starts() == 1);
    CHECK(sup.phase() == Phase::running);
    CHECK_FALSE(sup.ready());
    CHECK(sup.timeout_ms() == -1); // nothing to wait for
    CHECK(sys.count_lines("restarted") == 0);
    CHECK(sys.kills.empty());
}

TEST_CASE("pid1: supervisor: READY prints 'system ready in N ms' once") {
    FakeSys sys;
    Supervisor sup(sys, test_config()); // boot started at 1000
    sup.start_keeld(3);
    sys.advance(234);
    sup.on_ready();
    CHECK(sup.ready());
    CHECK(sys.lines.back() == "keel: system ready in 234 ms");
    sys.advance(1000);
    sup.on_ready(); // keeld says READY again (e.g. after a reload)
    sup.on_ready();
    CHECK(sys.count_lines("system ready") == 1);
    // A restarted keeld's READY is reported, but is not "system ready" again.
    crash_keeld(sys, sup);
    run_until_deadline(sys, sup);
    sup.on_ready();
    CHECK(sys.count_lines("system ready") == 1);
    CHECK(sys.lines.back() == "keel: keeld ready again");
}

TEST_CASE("pid1: supervisor: a keeld that never reports ready is reported once, and nothing else happens") {
    FakeSys sys;
    auto cfg = test_config();
    cfg.ready_report_ms = 60000;
    Supervisor sup(sys, cfg);
    CHECK(SupervisorConfig{}.ready_report_ms == 60000); // on by default
    sup.start_keeld(3);
    run_until_deadline(sys, sup);
    CHECK(sys.count_lines("has not reported ready 60 s after its start") == 1);
    CHECK(sup.keeld_pid() == 100); // not killed, not restarted: it may still get there
    CHECK(sys.kills.empty());
    CHECK(sup.timeout_ms() == -1);
    sys.advance(5000);
    sup.on_ready();
    CHECK(sys.lines.back() == "keel: system ready in 65000 ms");

    // Ready in time: no report.
    FakeSys sys2;
    Supervisor sup2(sys2, cfg);
    sup2.start_keeld(3);
    sys2.advance(1000);
    sup2.on_ready();
    CHECK(sup2.timeout_ms() == -1);
    sys2.advance(120000);
    sup2.tick();
    CHECK(sys2.count_lines("has not reported ready") == 0);

    // A keeld that dies first: its report is dropped, the next start has its own.
    FakeSys sys3;
    Supervisor sup3(sys3, cfg);
    sup3.start_keeld(3);
    sys3.advance(30000);
    sys3.exit_child(sup3.keeld_pid(), 9);
    sup3.reap_all();
    CHECK(sup3.timeout_ms() == cfg.backoff_min_ms);
    run_until_deadline(sys3, sup3); // restarted at 30100
    CHECK(sup3.timeout_ms() == 60000);
    sys3.advance(60000);
    sup3.tick();
    CHECK(sys3.count_lines("has not reported ready 60 s after its start") == 1);
}

// =============================================================================================
// Supervisor: keeld crash loop

TEST_CASE("pid1: supervisor: keeld crash loop restarts with exponential backoff, capped") {
    FakeSys sys;
    auto cfg = test_config();
    Supervisor sup(sys, cfg);
    sup.start_keeld(3);
    const std::vector<int64_t> expected = {100,  200,   400,   800,   1600,  3200,
                                           6400, 12800, 25600, 30000, 30000, 30000};
    for (size_t i = 0; i < expected.size(); ++i) {
        INFO("crash " << i + 1);
        pid_t old = sup.keeld_pid();
        int64_t delay = crash_keeld(sys, sup);
        CHECK(delay == expected[i]);
        CHECK(sys.lines.back() ==
              "keel: restarting keeld in " + std::to_string(expected[i]) + " ms");
        // Not a millisecond early.
        sys.advance(delay - 1);
        sup.tick();
        CHECK(sup.keeld_pid() == -1);
        CHECK(sys.spawns.size() == i + 1);
        sys.advance(1);
        sup.tick();
        REQUIRE(sys.spawns.size() == i + 2);
        CHECK(sup.keeld_pid() > 0);
        CHECK(sup.keeld_pid() != old);
        CHECK(sup.keeld_starts() == static_cast<int>(i + 2));
        CHECK(sys.lines.back() == "keel: keeld restarted (pid " + std::to_string(sup.keeld_pid()) +
                                      ", start " + std::to_string(i + 2) + ")");
        CHECK(sup.timeout_ms() == -1);
    }
    // Every death said why.
    CHECK(
        sys.count_lines("keel: keeld killed by SIGSEGV; stopping what is left of its containers") ==
        expected.size());
    // cgroup.kill precedes each restart.
    auto fx = sys.effects();
    for (size_t i = 1; i < fx.size(); ++i)
        if (fx[i].rfind("spawn ", 0) == 0) CHECK(fx[i - 1] == "write " + kCgroupKill + " 1");
    CHECK(sys.kills.empty()); // supervision alone never signals anyone
}

TEST_CASE("pid1: supervisor: an exit status is described") {
    FakeSys sys;
    Supervisor sup(sys, test_config());
    sup.start_keeld(3);
    crash_keeld(sys, sup, exited(3));
    CHECK(sys.count_lines("keel: keeld exited with 3;") == 1);
    CHECK(describe_status(exited(0)) == "exited with 0");
    CHECK(describe_status(killed(SIGKILL)) == "killed by SIGKILL");
}

TEST_CASE("pid1: supervisor: backoff resets after keeld ran stable_ms") {
    FakeSys sys;
    auto cfg = test_config();
    Supervisor sup(sys, cfg);
    sup.start_keeld(3);
    for (int64_t want : {100, 200, 400, 800}) {
        CHECK(crash_keeld(sys, sup) == want);
        run_until_deadline(sys, sup);
    }
    SECTION("ran exactly stable_ms: back to the minimum, then growing again") {
        sys.advance(cfg.stable_ms);
        CHECK(crash_keeld(sys, sup) == cfg.backoff_min_ms);
        run_until_deadline(sys, sup);
        CHECK(crash_keeld(sys, sup) == 2 * cfg.backoff_min_ms);
    }
    SECTION("one millisecond short of stable: the delay keeps growing") {
        sys.advance(cfg.stable_ms - 1);
        CHECK(crash_keeld(sys, sup) == 1600);
    }
}

TEST_CASE("pid1: supervisor: a keeld that cannot be spawned is retried, never thrown") {
    FakeSys sys;
    Supervisor sup(sys, test_config());
    sys.spawn_results = {-ENOENT, -ENOENT, -EACCES};
    CHECK_NOTHROW(sup.start_keeld(3));
    CHECK(sup.keeld_pid() == -1);
    CHECK(sys.lines.back() == "keel: cannot start /usr/bin/keeld: No such file or directory");
    CHECK(sup.timeout_ms() == 100);
    CHECK_NOTHROW(run_until_deadline(sys, sup));
    CHECK(sys.spawns.size() == 2);
    CHECK(sup.timeout_ms() == 200);
    CHECK_NOTHROW(run_until_deadline(sys, sup));
    CHECK(sys.lines.back() == "keel: cannot start /usr/bin/keeld: Permission denied");
    CHECK(sup.timeout_ms() == 400);
    run_until_deadline(sys, sup);
    REQUIRE(sys.spawns.size() == 4);
    CHECK(sup.keeld_pid() == 100);
    CHECK(sup.keeld_starts() == 4);
    CHECK(sup.timeout_ms() == -1);
    // Nothing ran, so there is no cgroup to kill and no process to reap.
    CHECK(sys.writes.empty());
    CHECK(sup.reaped() == 0);
}

TEST_CASE("pid1: supervisor: a spawn failure during a crash loop keeps growing the delay") {
    FakeSys sys;
    Supervisor sup(sys, test_config());
    sup.start_keeld(3);
    CHECK(crash_keeld(sys, sup) == 100);
    sys.spawn_results = {-ENOMEM};
    run_until_deadline(sys, sup);
    CHECK(sup.keeld_pid() == -1);
    CHECK(sup.timeout_ms() == 200);
    run_until_deadline(sys, sup);
    CHECK(sup.keeld_pid() > 0);
    CHECK(crash_keeld(sys, sup) == 400);
}

// =============================================================================================
// Supervisor: reaping

TEST_CASE("pid1: supervisor: a zombie storm is reaped in one reap_all, keeld untouched") {
    FakeSys sys;
    Supervisor sup(sys, test_config());
    sup.start_keeld(3);
    sup.on_ready();
    pid_t keeld = sup.keeld_pid();
    constexpr int kOrphans = 5000;
    for (pid_t p = 10000; p < 10000 + kOrphans; ++p)
        sys.adopt(p);
    for (pid_t p = 10000; p < 10000 + kOrphans; ++p)
        sys.exit_child(p, p % 2 ? exited(0) : killed(SIGKILL));
    size_t lines = sys.lines.size();
    sup.reap_all();
    CHECK(sup.reaped() == kOrphans);
    CHECK(sys.zombies.empty());
    CHECK(sys.alive == std::set<pid_t>{keeld});
    CHECK(sup.keeld_pid() == keeld);
    CHECK(sup.keeld_starts() == 1);
    CHECK(sup.phase() == Phase::running);
    CHECK(sys.lines.size() == lines); // orphans die quietly
    CHECK(sys.writes.empty());
    CHECK(sys.kills.empty());
    CHECK(sup.timeout_ms() == -1);
    // A SIGCHLD with nothing to reap is harmless.
    sup.reap_all();
    CHECK(sup.reaped() == kOrphans);
}

TEST_CASE("pid1: supervisor: keeld dying inside a zombie storm is handled once") {
    FakeSys sys;
    Supervisor sup(sys, test_config());
    sup.start_keeld(3);
    pid_t keeld = sup.keeld_pid();
    for (pid_t p = 10000; p < 11000; ++p)
        sys.adopt(p);
    for (pid_t p = 10000; p < 10500; ++p)
        sys.exit_child(p, exited(0));
    sys.exit_child(keeld, killed(SIGKILL));
    for (pid_t p = 10500; p < 11000; ++p)
        sys.exit_child(p, exited(0));
    sup.reap_all();
    CHECK(sup.reaped() == 1001);
    CHECK(sys.zombies.empty());
    CHECK(sys.count_lines("keel: keeld killed by SIGKILL") == 1);
    CHECK(sys.writes.size() == 1);
    CHECK(sup.timeout_ms() == 100);
    run_until_deadline(sys, sup);
    CHECK(sup.keeld_starts() == 2);
}

// =============================================================================================
// Supervisor: shutdown

namespace {

// A booted system: mounts as keel-init makes them, keeld ready, two orphans of its services.
struct Booted {
    FakeSys sys;
    Supervisor sup;
    pid_t keeld = -1;

    explicit Booted(SupervisorConfig cfg = test_config()) : sup(sys, std::move(cfg)) {
        sys.mounts = {"/",
                      "/proc",
                      "/sys",
                      "/dev",
                      "/dev/pts",
                      "/dev/shm",
                      "/run",
                      "/tmp",
                      "/sys/fs/cgroup",
                      "/sys/kernel/security",
                      "/var/lib/keel",
                      "/var/lib/keel/images/busybox",
                      "/proc/sys/fs/binfmt_misc"};
        sup.start_keeld(3);
        keeld = sup.keeld_pid();
        sys.adopt(500);
        sys.adopt(501);
        sys.advance(50);
        sup.on_ready();
    }
};

} // namespace

TEST_CASE("pid1: supervisor: poweroff shuts down in order") {
    Booted b;
    auto& sys = b.sys;
    auto& sup = b.sup;
    sys.unmount_errors["/var/lib/keel"] = EBUSY; // a shell still has its cwd there
    size_t mark = sys.events.size();

    sup.request(Action::poweroff);
    CHECK(sup.phase() == Phase::stopping_keeld);
    CHECK(sup.action() == Action::poweroff);
    // keeld alone is asked first: it stops its services in reverse dependency order.
    CHECK(sys.effects_since(mark) == std::vector<std::string>{kill_event(b.keeld, SIGTERM)});
    CHECK(sup.timeout_ms() == 10000);

    sys.advance(1200);
    sys.exit_child(b.keeld, exited(0));
    sup.reap_all();
    CHECK(sup.phase() == Phase::terminating);
    CHECK(sup.keeld_pid() == -1);
    CHECK(sup.timeout_ms() == 5000);
    CHECK(sys.spawns.size() == 1); // not restarted

    sys.advance(30);
    sys.exit_all(killed(SIGTERM)); // the orphans obey
    sup.reap_all();
    CHECK(sup.phase() == Phase::done);
    CHECK(sup.timeout_ms() == -1);

    CHECK(sys.effects_since(mark) == std::vector<std::string>{
                                         kill_event(b.keeld, SIGTERM),
                                         kill_event(-1, SIGTERM),
                                         kill_event(-1, SIGCONT),
                                         "sync",
                                         "unmount /var/lib/keel/images/busybox",
                                         "unmount /var/lib/keel " + std::to_string(EBUSY),
                                         "remount-ro /var/lib/keel",
                                         "unmount /tmp",
                                         "unmount /run",
                                         "sync",
                                         "reboot " + std::to_string(RB_POWER_OFF),
                                     });

    std::vector<std::string> console(sys.lines.begin() + static_cast<long>(sys.lines.size() - 10),
                                     sys.lines.end());
    CHECK(console == std::vector<std::string>{
                         "keel: poweroff requested",
                         "keel: shutdown: stopping keeld and its services",
                         "keel: shutdown: keeld stopped (exited with 0)",
                         "keel: shutdown: sending SIGTERM to all processes",
                         "keel: shutdown: syncing filesystems",
                         "keel: shutdown: unmounted /var/lib/keel/images/busybox",
                         "keel: shutdown: /var/lib/keel busy (EBUSY), remounted read-only",
                         "keel: shutdown: unmounted /tmp",
                         "keel: shutdown: unmounted /run",
                         "keel: shutdown: powering off",
                     });
}

TEST_CASE("pid1: supervisor: reboot ends in RB_AUTOBOOT") {
    Booted b;
    b.sup.request(Action::reboot);
    CHECK(b.sys.lines[b.sys.lines.size() - 2] == "keel: reboot requested");
    b.sys.exit_child(b.keeld, exited(0));
    b.sup.reap_all();
    b.sys.exit_all(exited(0));
    b.sup.reap_all();
    CHECK(b.sup.phase() == Phase::done);
    CHECK(b.sys.reboots == std::vector<int>{RB_AUTOBOOT});
    CHECK(b.sys.count_lines("keel: shutdown: rebooting") == 1);
    CHECK(b.sys.count_lines("powering off") == 0);
}

TEST_CASE("pid1: supervisor: unmount skips /, /proc, /sys, /dev and what is under them") {
    Booted b;
    b.sys.mounts.insert(b.sys.mounts.begin() + 1, "/procedures"); // a prefix, not a submount
    b.sys.unmount_errors["/run"] = EINVAL;                        // not a mount point (any more)
    b.sup.request(Action::poweroff);
    b.sys.exit_all(exited(0));
    b.sup.reap_all();
    CHECK(b.sys.unmounts == std::vector<std::string>{"/var/lib/keel/images/busybox",
                                                     "/var/lib/keel", "/tmp", "/run",
                                                     "/procedures"});
    CHECK(b.sys.remounts.empty()); // EINVAL is not "busy"
    CHECK(b.sys.count_lines("/run") == 0);
}

TEST_CASE("pid1: supervisor: a failed reboot(2) is reported and the machine stays done") {
    Booted b;
    b.sys.reboot_result = EPERM;
    b.sup.request(Action::poweroff);
    b.sys.exit_all(exited(0));
    b.sup.reap_all();
    CHECK(b.sys.lines.back() == "keel: reboot(2) failed: Operation not permitted");
    CHECK(b.sup.phase() == Phase::done);
    // The loop keeps reaping: nothing is restarted or repeated.
    b.sys.adopt(900);
    b.sys.exit_child(900, exited(0));
    b.sup.reap_all();
    b.sup.tick();
    CHECK(b.sys.reboots.size() == 1);
    CHECK(b.sys.spawns.size() == 1);
}

TEST_CASE("pid1: supervisor: test mode ends in Phase::done without reboot(2)") {
    auto cfg = test_config();
    cfg.call_reboot = false;
    Booted b(cfg);
    b.sup.request(Action::poweroff);
    b.sys.exit_all(exited(0));
    b.sup.reap_all();
    CHECK(b.sup.phase() == Phase::done);
    CHECK(b.sys.reboots.empty());
    CHECK(b.sys.lines.back() == "keel: shutdown: powering off");
}

TEST_CASE(
    "pid1: supervisor: a keeld that ignores SIGTERM: terminating, SIGKILL, then done regardless") {
    Booted b;
    auto& sys = b.sys;
    auto& sup = b.sup;
    sup.request(Action::poweroff);
    size_t mark = sys.events.size();

    sys.advance(9999);
    sup.tick();
    CHECK(sup.phase() == Phase::stopping_keeld);
    CHECK(sup.timeout_ms() == 1);
    sys.advance(1);
    sup.tick();
    CHECK(sup.phase() == Phase::terminating);
    CHECK(sys.count_lines("keel: shutdown: keeld did not stop in time") == 1);
    CHECK(sup.timeout_ms() == 5000);

    sys.advance(4999);
    sup.tick();
    CHECK(sup.phase() == Phase::terminating);
    sys.advance(1);
    sup.tick();
    CHECK(sup.phase() == Phase::killing);
    CHECK(sys.count_lines("keel: shutdown: sending SIGKILL to all processes") == 1);
    CHECK(sup.timeout_ms() == 2000);

    // Something unkillable (stuck in D state) remains: shutdown goes on without it.
    sys.advance(2000);
    sup.tick();
    CHECK(sup.phase() == Phase::done);
    CHECK(sys.alive.size() == 3);
    CHECK(sys.effects_since(mark) == std::vector<std::string>{
                                         kill_event(-1, SIGTERM),
                                         kill_event(-1, SIGCONT),
                                         kill_event(-1, SIGKILL),
                                         "sync",
                                         "unmount /var/lib/keel/images/busybox",
                                         "unmount /var/lib/keel",
                                         "unmount /tmp",
                                         "unmount /run",
                                         "sync",
                                         "reboot " + std::to_string(RB_POWER_OFF),
                                     });
    CHECK(sys.spawns.size() == 1);
}

TEST_CASE("pid1: supervisor: everyone dying of SIGKILL finishes before kill_ms") {
    Booted b;
    b.sup.request(Action::poweroff);
    run_until_deadline(b.sys, b.sup); // keeld did not stop
    run_until_deadline(b.sys, b.sup); // nobody obeyed SIGTERM
    REQUIRE(b.sup.phase() == Phase::killing);
    b.sys.advance(10);
    b.sys.exit_all(killed(SIGKILL));
    b.sup.reap_all();
    CHECK(b.sup.phase() == Phase::done);
    CHECK(b.sys.reboots.size() == 1);
    CHECK(b.sys.spawns.size() == 1); // keeld died, and was not restarted
    CHECK(b.sys.count_lines("restarting keeld") == 0);
}

TEST_CASE(
    "pid1: supervisor: a signal during shutdown is ignored and does not restart the sequence") {
    Booted b;
    auto& sys = b.sys;
    auto& sup = b.sup;
    sup.request(Action::poweroff);
    sys.advance(3000);
    size_t mark = sys.events.size();

    sup.request(Action::reboot); // Ctrl-Alt-Del while stopping
    sup.request(Action::poweroff);
    CHECK(sys.count_lines("keel: already shutting down") == 2);
    CHECK(sys.effects_since(mark).empty()); // keeld is not signalled again
    CHECK(sup.phase() == Phase::stopping_keeld);
    CHECK(sup.action() == Action::poweroff);
    CHECK(sup.timeout_ms() == 7000); // the deadline did not move

    sys.exit_child(b.keeld, exited(0));
    sup.reap_all();
    REQUIRE(sup.phase() == Phase::terminating);
    sys.advance(1000);
    sup.request(Action::reboot);
    CHECK(sys.count_lines("keel: already shutting down") == 3);
    CHECK(sup.phase() == Phase::terminating);
    CHECK(sup.timeout_ms() == 4000);
    CHECK(std::count(sys.kills.begin(), sys.kills.end(), std::make_pair(-1, SIGTERM)) == 1);

    sys.exit_all(exited(0));
    sup.reap_all();
    CHECK(sys.reboots == std::vector<int>{RB_POWER_OFF});
    CHECK(sys.count_lines("requested") == 1);
    sup.request(Action::poweroff); // after the end too
    CHECK(sys.reboots.size() == 1);
}

TEST_CASE("pid1: supervisor: keeld dying during shutdown is not restarted") {
    SECTION("crashing while stopping its services") {
        Booted b;
        b.sup.request(Action::poweroff);
        b.sys.exit_child(b.keeld, killed(SIGSEGV));
        b.sup.reap_all();
        CHECK(b.sup.phase() == Phase::terminating);
        CHECK(b.sys.count_lines("keel: shutdown: keeld stopped (killed by SIGSEGV)") == 1);
        CHECK(b.sup.timeout_ms() == 5000);
        b.sys.advance(5000);
        b.sup.tick();
        CHECK(b.sys.spawns.size() == 1);
        CHECK(b.sys.writes.empty());
    }
    SECTION("dying from the SIGTERM to everyone") {
        Booted b;
        b.sup.request(Action::poweroff);
        run_until_deadline(b.sys, b.sup);
        REQUIRE(b.sup.phase() == Phase::terminating);
        b.sys.exit_child(b.keeld, killed(SIGTERM));
        b.sup.reap_all();
        CHECK(b.sup.phase() == Phase::terminating);
        CHECK(b.sup.keeld_pid() == -1);
        CHECK(b.sup.timeout_ms() == 5000);
        b.sys.exit_all(exited(0));
        b.sup.reap_all();
        CHECK(b.sup.phase() == Phase::done);
        CHECK(b.sys.spawns.size() == 1);
        CHECK(b.sys.writes.empty());
        CHECK(b.sys.count_lines("restarting keeld") == 0);
    }
    SECTION("a restart that was pending when shutdown began is cancelled") {
        Booted b;
        crash_keeld(b.sys, b.sup);
        REQUIRE(b.sup.timeout_ms() == 100);
        b.sup.request(Action::poweroff);
        // No keeld to ask: straight to SIGTERM for everyone.
        CHECK(b.sup.phase() == Phase::terminating);
        CHECK(b.sys.kills.front() == std::make_pair(-1, SIGTERM));
        CHECK(b.sup.timeout_ms() == 5000);
        b.sys.advance(100);
        b.sup.tick();
        CHECK(b.sys.spawns.size() == 1);
        b.sup.on_ready(); // a stale READY changes nothing
        CHECK(b.sys.count_lines("ready again") == 0);
    }
}

TEST_CASE("pid1: supervisor: shutdown with no children left finishes at once") {
    FakeSys sys;
    Supervisor sup(sys, test_config());
    sup.start_keeld(3);
    sup.request(Action::poweroff);
    sys.exit_child(sup.keeld_pid(), exited(0));
    sup.reap_all(); // keeld was the last child: SIGTERM to all finds nobody
    CHECK(sup.phase() == Phase::done);
    CHECK(sys.reboots == std::vector<int>{RB_POWER_OFF});
    CHECK(sys.syncs == 2);
}

// =============================================================================================
// Kernel command line

TEST_CASE("pid1: cmdline: keel.* keys") {
    auto k = parse_cmdline("BOOT_IMAGE=/boot/vmlinuz root=/dev/vda2 ro quiet console=ttyS0,115200 "
                           "keel.state=MYSTATE keel.debug keel.recovery=0 keel.autologin=yes "
                           "keel.config.hostname=box keel.config.motd=\"hello keel world\" "
                           "keel.frobnicate=1 keel.nothing TERM=linux single -- init_arg\n");
    REQUIRE(k.state_label);
    CHECK(*k.state_label == "MYSTATE");
    CHECK(k.debug);
    CHECK_FALSE(k.recovery);
    CHECK(k.autologin);
    CHECK(k.config ==
          std::map<std::string, std::string>{{"hostname", "box"}, {"motd", "hello keel world"}});
    CHECK(k.unknown_keel == std::vector<std::string>{"keel.frobnicate=1", "keel.nothing"});
}

TEST_CASE("pid1: cmdline: defaults, and nothing else is fatal") {
    auto empty = parse_cmdline("");
    CHECK_FALSE(empty.state_label);
    CHECK_FALSE(empty.debug);
    CHECK_FALSE(empty.recovery);
    CHECK_FALSE(empty.autologin);
    CHECK(empty.config.empty());
    CHECK(empty.unknown_keel.empty());

    auto k = parse_cmdline("root=LABEL=keel quiet HOME=/ TERM=linux keelx=1 notkeel.debug "
                           "x.keel.recovery keel \"unterminated quote keel.debug");
    CHECK_FALSE(k.state_label);
    CHECK_FALSE(k.debug); // inside the unterminated quote: one word that is not a keel.* key
    CHECK_FALSE(k.recovery);
    CHECK(k.config.empty());
    CHECK(k.unknown_keel.empty());
}

TEST_CASE("pid1: cmdline: boolean values and odd keel.* words") {
    CHECK(parse_cmdline("keel.recovery").recovery);
    CHECK(parse_cmdline("keel.recovery=1").recovery);
    CHECK(parse_cmdline("keel.recovery=true").recovery);
    CHECK(parse_cmdline("keel.recovery=on").recovery);
    CHECK_FALSE(parse_cmdline("keel.recovery=no").recovery);
    CHECK_FALSE(parse_cmdline("keel.debug keel.debug=0").debug); // the last word wins
    CHECK_FALSE(parse_cmdline("keel.state=").state_label);       // an empty label is no label

    auto k =
        parse_cmdline("keel.config.a=1=2 keel.config.empty= keel.config.novalue keel.config.=x");
    CHECK(k.config == std::map<std::string, std::string>{{"a", "1=2"}, {"empty", ""}});
    CHECK(k.unknown_keel == std::vector<std::string>{"keel.config.novalue", "keel.config.=x"});
}

TEST_CASE("pid1: cmdline: splitting groups double quotes like the kernel") {
    CHECK(split_cmdline("a  b\tc\n") == std::vector<std::string>{"a", "b", "c"});
    CHECK(split_cmdline("x=\"a b\" \"keel.config.k=v w\" y") ==
          std::vector<std::string>{"x=a b", "keel.config.k=v w", "y"});
    CHECK(split_cmdline("a \"\" b") == std::vector<std::string>{"a", "", "b"});
    CHECK(split_cmdline("   ").empty());
}

// =============================================================================================
// Kernel modules

namespace {

// Shaped like Debian's modules.dep: each line lists the module's whole dependency closure,
// in the order modprobe unloads them.
const char* kModulesDep =
    "kernel/fs/ext4/ext4.ko.xz: kernel/lib/crc16.ko.xz kernel/fs/mbcache.ko.xz "
    "kernel/fs/jbd2/jbd2.ko.xz\n"
    "kernel/fs/mbcache.ko.xz:\n"
    "kernel/fs/jbd2/jbd2.ko.xz:\n"
    "kernel/lib/crc16.ko.xz:\n"
    "kernel/net/bridge/bridge.ko.xz: kernel/net/802/stp.ko.xz kernel/net/llc/llc.ko.xz\n"
    "kernel/net/802/stp.ko.xz: kernel/net/llc/llc.ko.xz\n"
    "kernel/net/llc/llc.ko.xz:\n"
    "kernel/drivers/net/virtio_net.ko.xz: kernel/drivers/net/net_failover.ko.xz "
    "kernel/net/core/failover.ko.xz\n"
    "kernel/drivers/net/net_failover.ko.xz: kernel/net/core/failover.ko.xz\n"
    "kernel/net/core/failover.ko.xz:\n"
    "kernel/drivers/block/virtio-blk.ko.zst:\n"
    "\n"
    "kernel/drivers/char/broken.ko: kernel/drivers/char/gone.ko\n";

size_t index_of(const std::vector<std::string>& v, const std::string& s) {
    auto it = std::find(v.begin(), v.end(), s);
    REQUIRE(it != v.end());
    return static_cast<size_t>(it - v.begin());
}

} // namespace

TEST_CASE("pid1: modules: names from paths") {
    CHECK(modules::module_name("kernel/drivers/net/virtio-net.ko.xz") == "virtio_net");
    CHECK(modules::module_name("kernel/fs/ext4/ext4.ko") == "ext4");
    CHECK(modules::module_name("crc32c-generic.ko.zst") == "crc32c_generic");
}

TEST_CASE("pid1: modules: modules.dep is parsed") {
    auto t = modules::parse_modules_dep(kModulesDep);
    CHECK(t.path.size() == 12);
    CHECK(t.path.at("ext4") == "kernel/fs/ext4/ext4.ko.xz");
    CHECK(t.path.at("virtio_blk") == "kernel/drivers/block/virtio-blk.ko.zst");
    CHECK(t.deps.at("ext4") == std::vector<std::string>{"crc16", "mbcache", "jbd2"});
    CHECK(t.deps.at("llc").empty());
}

TEST_CASE("pid1: modules: load order puts dependencies first, each once") {
    auto t = modules::parse_modules_dep(kModulesDep);
    std::vector<std::string> missing;
    auto order = modules::load_order(
        t, {"ext4", "bridge", "virtio-net", "jbd2", "llc", "virtio-blk", "ext4"}, {"unix", "loop"},
        missing);
    CHECK(missing.empty());
    CHECK(std::set<std::string>(order.begin(), order.end()).size() == order.size()); // each once
    CHECK(std::set<std::string>(order.begin(), order.end()) ==
          std::set<std::string>{"ext4", "crc16", "mbcache", "jbd2", "bridge", "stp", "llc",
                                "virtio_net", "net_failover", "failover", "virtio_blk"});
    for (const auto& [name, deps] : t.deps) {
        if (std::find(order.begin(), order.end(), name) == order.end()) continue;
        for (const auto& d : deps) {
            INFO(d << " before " << name);
            CHECK(index_of(order, d) < index_of(order, name));
        }
    }
    // The full order: modules.dep lists a closure in unload order, so it loads from the right.
    CHECK(order == std::vector<std::string>{"jbd2", "mbcache", "crc16", "ext4", "llc", "stp",
                                            "bridge", "failover", "net_failover", "virtio_net",
                                            "virtio_blk"});
}

TEST_CASE("pid1: modules: builtin modules are not missing, absent ones are reported") {
    auto t = modules::parse_modules_dep(kModulesDep);
    std::vector<std::string> missing;
    auto order =
        modules::load_order(t, {"unix", "no-such-module", "ext4", "broken", "no_such_module"},
                            {"unix", "af_packet"}, missing);
    CHECK(missing == std::vector<std::string>{"no_such_module", "gone"});
    CHECK(std::find(order.begin(), order.end(), "unix") == order.end());
    CHECK(std::find(order.begin(), order.end(), "ext4") != order.end());
    // A missing dependency is reported; its dependant is still tried (and its failure named).
    CHECK(std::find(order.begin(), order.end(), "broken") != order.end());
}

TEST_CASE("pid1: modules: a dependency cycle neither hangs nor loads a module twice") {
    std::vector<std::string> missing;
    auto two = modules::parse_modules_dep("a.ko: b.ko\nb.ko: a.ko\n");
    auto order = modules::load_order(two, {"a", "b"}, {}, missing);
    CHECK(std::set<std::string>(order.begin(), order.end()) == std::set<std::string>{"a", "b"});
    CHECK(order.size() == 2);

    auto dense = modules::parse_modules_dep("a.ko: b.ko c.ko d.ko\nb.ko: a.ko c.ko d.ko\n"
                                            "c.ko: a.ko b.ko d.ko\nd.ko: a.ko b.ko c.ko\n");
    order = modules::load_order(dense, {"a", "d"}, {}, missing);
    CHECK(order.size() == 4);
    CHECK(missing.empty());

    auto self = modules::parse_modules_dep("s.ko: s.ko\n");
    CHECK(modules::load_order(self, {"s"}, {}, missing) == std::vector<std::string>{"s"});
}

TEST_CASE("pid1: modules: the allow-list") {
    auto l = modules::parse_allow_list("modules:\n"
                                       "  - virtio-pci\n"
                                       "  - {name: virtio_rng, params: \"\"}\n"
                                       "  - name: loop\n"
                                       "    params: max_loop=64 max_part=4\n"
                                       "lock: false\n",
                                       "modules.yml");
    REQUIRE(l.ok());
    REQUIRE(l->modules.size() == 3);
    CHECK(l->modules[0].name == "virtio_pci");
    CHECK(l->modules[1].name == "virtio_rng");
    CHECK(l->modules[1].params.empty());
    CHECK(l->modules[2].params == "max_loop=64 max_part=4");
    CHECK_FALSE(l->lock);

    auto empty = modules::parse_allow_list("", "modules.yml");
    REQUIRE(empty.ok());
    CHECK(empty->modules.empty());
    CHECK(empty->lock); // locking is the default
}

TEST_CASE("pid1: modules: the shipped allow-list parses") {
    std::string text = slurp(std::string(KEEL_SOURCE_DIR) + "/config/modules.yml");
    auto l = modules::parse_allow_list(text, "config/modules.yml");
    REQUIRE(l.ok());
    CHECK(l->lock);
    std::set<std::string> names;
    for (const auto& m : l->modules)
        names.insert(m.name);
    CHECK(names.count("ext4") == 1);
    CHECK(names.count("virtio_blk") == 1);
}

TEST_CASE("pid1: modules: allow-list errors name the file and line") {
    auto err = [](const std::string& text) {
        auto r = modules::parse_allow_list(text, "/etc/keel/modules.yml");
        REQUIRE_FALSE(r.ok());
        return r.error().str();
    };
    CHECK(err("modules:\n  - ext4\nfrobnicate: 1\n") ==
          "/etc/keel/modules.yml:3: unknown key 'frobnicate'");
    CHECK(err("modules:\n  - ext4\n  - name: loop\n    param: max_loop=8\n") ==
          "/etc/keel/modules.yml:4: modules: unknown key 'param'");
    CHECK(err("# the list\nmodules: ext4\n") ==
          "/etc/keel/modules.yml:2: modules: expected a list");
    CHECK(err("modules:\n  - ext4\n  - {params: x}\n") ==
          "/etc/keel/modules.yml:3: modules: entry without a name");
    CHECK(err("- ext4\n") == "/etc/keel/modules.yml: expected a mapping with 'modules'");
    CHECK(err("modules: []\nlock: maybe\n").rfind("/etc/keel/modules.yml:2: ", 0) == 0);
    std::string syntax = err("modules:\n  - ext4\n  - [loop\n");
    CHECK(syntax.rfind("/etc/keel/modules.yml:", 0) == 0);
    CHECK(syntax != "/etc/keel/modules.yml:");
}

// =============================================================================================
// sysctl hardening profile

TEST_CASE("pid1: sysctl: key paths") {
    CHECK(sysctl::key_path("kernel.kptr_restrict") == "/proc/sys/kernel/kptr_restrict");
    CHECK(sysctl::key_path("net.ipv4.conf.all.accept_redirects") ==
          "/proc/sys/net/ipv4/conf/all/accept_redirects");
    CHECK(sysctl::key_path("net/ipv4/conf/eth0.100/rp_filter") ==
          "/proc/sys/net/ipv4/conf/eth0.100/rp_filter");
    CHECK(sysctl::key_path("fs.protected_fifos", "/tmp/x") == "/tmp/x/fs/protected_fifos");
}

TEST_CASE("pid1: sysctl: the profile keeps file order and values as written") {
    auto p = sysctl::parse_profile("sysctl:\n"
                                   "  kernel.kptr_restrict: 2\n"
                                   "  fs.protected_fifos: 2   # a comment\n"
                                   "  net.ipv4.ip_local_port_range: \"32768 60999\"\n"
                                   "  kernel.sysrq: 0\n",
                                   "sysctl.yml");
    REQUIRE(p.ok());
    CHECK(*p == sysctl::Profile{{"kernel.kptr_restrict", "2"},
                                {"fs.protected_fifos", "2"},
                                {"net.ipv4.ip_local_port_range", "32768 60999"},
                                {"kernel.sysrq", "0"}});
    auto empty = sysctl::parse_profile("# nothing\n", "sysctl.yml");
    REQUIRE(empty.ok());
    CHECK(empty->empty());
}

TEST_CASE("pid1: sysctl: profile errors name the file and line") {
    auto err = [](const std::string& text) {
        auto r = sysctl::parse_profile(text, "/etc/keel/sysctl.yml");
        REQUIRE_FALSE(r.ok());
        return r.error().str();
    };
    CHECK(err("sysctls:\n  kernel.sysrq: 0\n") ==
          "/etc/keel/sysctl.yml:1: expected one key, 'sysctl'");
    CHECK(err("sysctl: 1\n") == "/etc/keel/sysctl.yml:1: sysctl: expected a mapping");
    CHECK(err("sysctl:\n  kernel.sysrq: 0\n  kernel.kptr_restrict:\n    - 2\n") ==
          "/etc/keel/sysctl.yml:4: sysctl.kernel.kptr_restrict: expected a value");
    CHECK(err("sysctl:\n  kernel.sysrq: [0\n").rfind("/etc/keel/sysctl.yml:", 0) == 0);
}

TEST_CASE("pid1: sysctl: the shipped profile has the hardening the issue asks for") {
    std::string text = slurp(std::string(KEEL_SOURCE_DIR) + "/config/sysctl.yml");
    auto p = sysctl::parse_profile(text, "config/sysctl.yml");
    REQUIRE(p.ok());
    std::map<std::string, std::string> m(p->begin(), p->end());
    const std::map<std::string, std::string> want = {
        {"kernel.kptr_restrict", "2"},       {"kernel.dmesg_restrict", "1"},
        {"kernel.perf_event_paranoid", "3"}, {"kernel.unprivileged_bpf_disabled", "1"},
        {"net.core.bpf_jit_harden", "2"},    {"fs.suid_dumpable", "0"},
        {"kernel.randomize_va_space", "2"},  {"kernel.sysrq", "0"},
        {"dev.tty.ldisc_autoload", "0"},     {"vm.unprivileged_userfaultfd", "0"},
        {"net.ipv4.tcp_syncookies", "1"},    {"net.ipv4.conf.all.accept_redirects", "0"},
    };
    for (const auto& [k, v] : want) {
        INFO(k);
        REQUIRE(m.count(k) == 1);
        CHECK(m[k] == v);
    }
    CHECK(m.count("kernel.yama.ptrace_scope") == 1);
    CHECK(m.count("fs.protected_symlinks") == 1);
}

TEST_CASE("pid1: sysctl: apply writes every value it can and names each one it cannot") {
    std::string root = temp_dir();
    touch(root + "/kernel/kptr_restrict");
    touch(root + "/fs/protected_fifos");
    touch(root + "/net/ipv4/conf/all/accept_redirects");
    std::filesystem::create_directories(root + "/kernel/yama"); // a directory, not a knob

    sysctl::Profile p = {{"kernel.kptr_restrict", "2"},
                         {"net.ipv4.tcp_syncookies", "1"}, // not in this "kernel"
                         {"fs.protected_fifos", "2"},
                         {"kernel.yama", "1"},
                         {"net.ipv4.conf.all.accept_redirects", "0"}};
    auto out = sysctl::apply(p, root);
    CHECK(out.applied == 3);
    CHECK(out.failures == std::vector<std::string>{
                              "net.ipv4.tcp_syncookies=1: ENOENT (No such file or directory)",
                              "kernel.yama=1: EISDIR (Is a directory)",
                          });
    CHECK(slurp(root + "/kernel/kptr_restrict") == "2");
    CHECK(slurp(root + "/fs/protected_fifos") == "2");
    CHECK(slurp(root + "/net/ipv4/conf/all/accept_redirects") == "0");
    // A missing knob is not created: /proc/sys cannot grow one, and neither does a test dir.
    CHECK(::access((root + "/net/ipv4/tcp_syncookies").c_str(), F_OK) != 0);
    std::filesystem::remove_all(root);
}

TEST_CASE("pid1: sysctl: an interface default also reaches the interfaces that exist already") {
    std::string root = temp_dir();
    for (const char* f : {"default", "all", "eth0", "lo"}) touch(root + "/net/ipv6/conf/" + f + "/accept_ra");
    touch(root + "/net/ipv4/conf/default/rp_filter");
    touch(root + "/net/ipv4/conf/eth0.100/rp_filter");
    std::filesystem::create_directories(root + "/net/ipv4/conf/wlan0"); // no such knob there

    sysctl::Profile p = {{"net.ipv6.conf.default.accept_ra", "0"}, {"net.ipv4.conf.default.rp_filter", "1"}};
    auto out = sysctl::apply(p, root);
    CHECK(out.applied == 5);
    CHECK(out.attempted == 6);
    CHECK(out.failures ==
          std::vector<std::string>{"net.ipv4.conf.wlan0.rp_filter=1: ENOENT (No such file or directory)"});
    for (const char* f : {"default", "eth0", "lo"}) CHECK(slurp(root + "/net/ipv6/conf/" + f + "/accept_ra") == "0");
    CHECK(slurp(root + "/net/ipv6/conf/all/accept_ra").empty()); // "all" is its own key
    CHECK(slurp(root + "/net/ipv4/conf/eth0.100/rp_filter") == "1");
    std::filesystem::remove_all(root);
}
