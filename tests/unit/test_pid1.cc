// PID 1 without root, a VM or timing luck: the Supervisor runs against FakeSys (the Sys seam),
// which owns the clock, the process table and the mount table; plus applying the sysctl profile.
// (The formats PID 1 reads are in test_config_formats.cc.)
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

TEST_CASE("pid1: supervisor: a keeld that never reports ready is reported once, and nothing else "
          "happens") {
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
// Applying the sysctl hardening profile (its format is tested in test_config_formats.cc)

TEST_CASE("pid1: sysctl: apply writes every value it can and names each one it cannot") {
    std::string root = temp_dir();
    touch(root + "/kernel/kptr_restrict");
    touch(root + "/fs/protected_fifos");
    touch(root + "/net/ipv4/conf/all/accept_redirects");
    std::filesystem::create_directories(root + "/kernel/yama"); // a directory, not a knob

    keel::config::sysctl::Profile p = {{"kernel.kptr_restrict", "2"},
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
    for (const char* f : {"default", "all", "eth0", "lo"})
        touch(root + "/net/ipv6/conf/" + f + "/accept_ra");
    touch(root + "/net/ipv4/conf/default/rp_filter");
    touch(root + "/net/ipv4/conf/eth0.100/rp_filter");
    std::filesystem::create_directories(root + "/net/ipv4/conf/wlan0"); // no such knob there

    keel::config::sysctl::Profile p = {{"net.ipv6.conf.default.accept_ra", "0"},
                                       {"net.ipv4.conf.default.rp_filter", "1"}};
    auto out = sysctl::apply(p, root);
    CHECK(out.applied == 5);
    CHECK(out.attempted == 6);
    CHECK(out.failures ==
          std::vector<std::string>{
              "net.ipv4.conf.wlan0.rp_filter=1: ENOENT (No such file or directory)"});
    for (const char* f : {"default", "eth0", "lo"})
        CHECK(slurp(root + "/net/ipv6/conf/" + f + "/accept_ra") == "0");
    CHECK(slurp(root + "/net/ipv6/conf/all/accept_ra").empty()); // "all" is its own key
    CHECK(slurp(root + "/net/ipv4/conf/eth0.100/rp_filter") == "1");
    std::filesystem::remove_all(root);
}
