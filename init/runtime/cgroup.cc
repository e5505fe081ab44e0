#include "runtime/cgroup.h"

#include <dirent.h>
#include <fcntl.h>
#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <fmt/format.h>
#include <thread>

#include "common/strings.h"

namespace keel::runtime::cgroup {

const std::string& mountpoint() {
    static std::string cached = [] {
        std::string info;
        if (!read_file("/proc/self/mountinfo", info)) return std::string();
        // mountinfo: "... mountpoint opts ... - fstype source superopts"
        for (const auto& line : split(info, '\n')) {
            auto dash = line.find(" - ");
            if (dash == std::string::npos) continue;
            auto right = split(line.substr(dash + 3), ' ');
            if (right.empty() || right[0] != "cgroup2") continue;
            auto left = split(line.substr(0, dash), ' ');
            if (left.size() > 4) return left[4];
        }
        return std::string();
    }();
    return cached;
}

static std::string read_trimmed(const std::string& path) {
    std::string s;
    read_file(path.c_str(), s);
    return std::string(trim(s));
}

static Status write_knob(const std::string& dir, const char* knob, const std::string& value) {
    std::string p = dir + "/" + knob;
    if (!write_file(p.c_str(), value)) return sys_error(fmt::format("write {} to {}", value, p));
    return {};
}

static std::vector<std::string> needed_controllers(const Resources& r) {
    std::vector<std::string> c;
    if (r.memory_max || r.memory_high || r.memory_swap) c.push_back("memory");
    if (r.pids_max) c.push_back("pids");
    if (r.cpu_quota || r.cpu_weight) c.push_back("cpu");
    return c;
}

Result<Cgroup> create(const std::string& rel, const Resources& limits) {
    const std::string& root = mountpoint();
    if (root.empty()) {
        if (!limits.any()) return Cgroup{};
        return plain_error("resource limits need cgroup v2, which is not mounted");
    }
    auto controllers = needed_controllers(limits);
    auto available = split(read_trimmed(root + "/cgroup.controllers"), ' ');
    for (const auto& c : controllers) {
        if (std::find(available.begin(), available.end(), c) == available.end())
            return plain_error(
                fmt::format("cgroup v2 controller '{}' is not available at {} (available: {})", c,
                            root, join(available, " ").empty() ? "none" : join(available, " ")));
    }

    // Enable the controllers from the root down to the parent, creating directories as needed.
    std::string enable;
    for (const auto& c : controllers)
        enable += (enable.empty() ? "+" : " +") + c;
    std::string dir = root;
    auto parts = split(rel, '/');
    std::vector<std::string> comps;
    for (auto& p : parts)
        if (!p.empty() && p != "." && p != "..") comps.push_back(p);
    if (comps.empty()) return plain_error(fmt::format("invalid cgroup path '{}'", rel));
    for (size_t i = 0; i < comps.size(); ++i) {
        if (!enable.empty()) KEEL_TRY(write_knob(dir, "cgroup.subtree_control", enable));
        dir += "/" + comps[i];
        bool last = i + 1 == comps.size();
        if (::mkdir(dir.c_str(), 0755) < 0) {
            if (errno != EEXIST) return sys_error("create cgroup " + dir);
            if (last) return sys_error("create cgroup " + dir + " (already exists)", EEXIST);
        }
    }

    Cgroup cg;
    cg.path_ = dir;
    auto fail = [&](Status s) -> Result<Cgroup> {
        ::rmdir(dir.c_str());
        return s.error();
    };
    if (limits.memory_max)
        if (auto s = write_knob(dir, "memory.max", std::to_string(*limits.memory_max)); !s)
            return fail(s);
    if (limits.memory_high)
        if (auto s = write_knob(dir, "memory.high", std::to_string(*limits.memory_high)); !s)
            return fail(s);
    if (limits.memory_swap) {
        // OCI's swap is memory+swap; cgroup v2's memory.swap.max is swap alone.
        int64_t swap =
            *limits.memory_swap < 0 ? -1 : *limits.memory_swap - limits.memory_max.value_or(0);
        std::string v = swap < 0 ? "max" : std::to_string(swap);
        if (auto s = write_knob(dir, "memory.swap.max", v); !s) return fail(s);
    }
    if (limits.pids_max) {
        std::string v = *limits.pids_max <= 0 ? "max" : std::to_string(*limits.pids_max);
        if (auto s = write_knob(dir, "pids.max", v); !s) return fail(s);
    }
    if (limits.cpu_quota) {
        std::string v = fmt::format(
            "{} {}", *limits.cpu_quota < 0 ? std::string("max") : std::to_string(*limits.cpu_quota),
            limits.cpu_period.value_or(100000));
        if (auto s = write_knob(dir, "cpu.max", v); !s) return fail(s);
    }
    if (limits.cpu_weight)
        if (auto s = write_knob(dir, "cpu.weight", std::to_string(*limits.cpu_weight)); !s)
            return fail(s);

    cg.dir_.reset(::open(dir.c_str(), O_PATH | O_DIRECTORY | O_CLOEXEC));
    if (!cg.dir_) return fail(sys_error("open cgroup " + dir));
    return cg;
}

Result<Cgroup> open_existing(const std::string& abs_path) {
    Cgroup cg;
    cg.path_ = abs_path;
    cg.dir_.reset(::open(abs_path.c_str(), O_PATH | O_DIRECTORY | O_CLOEXEC));
    if (!cg.dir_) return sys_error("open cgroup " + abs_path);
    return cg;
}

Status Cgroup::delegate_to(uid_t uid, gid_t gid) const {
    for (const char* f : {"", "/cgroup.procs", "/cgroup.threads", "/cgroup.subtree_control"}) {
        std::string p = path_ + f;
        if (::chown(p.c_str(), uid, gid) < 0 && errno != ENOENT) return sys_error("chown " + p);
    }
    return {};
}

static bool populated(const std::string& dir) {
    std::string ev = read_trimmed(dir + "/cgroup.events");
    if (ev.empty()) return !read_trimmed(dir + "/cgroup.procs").empty();
    return ev.find("populated 1") != std::string::npos;
}

Status destroy(const std::string& abs_path) {
    if (abs_path.empty()) return {};
    if (::rmdir(abs_path.c_str()) == 0 || errno == ENOENT) return {};
    if (errno != EBUSY) return sys_error("remove cgroup " + abs_path);
    if (!write_file((abs_path + "/cgroup.kill").c_str(), "1")) {
        // Kernels before 5.14 have no cgroup.kill.
        std::string procs;
        read_file((abs_path + "/cgroup.procs").c_str(), procs);
        for (const auto& p : split(procs, '\n'))
            if (!p.empty()) ::kill(std::stoi(p), SIGKILL);
    }
    for (int i = 0; i < 400 && populated(abs_path); ++i)
        std::this_thread::sleep_for(std::chrono::milliseconds(5));
    // A nested runtime leaves cgroups of its own below ours; they go first.
    if (DIR* d = ::opendir(abs_path.c_str())) {
        std::vector<std::string> subdirs;
        while (dirent* e = ::readdir(d))
            if (e->d_type == DT_DIR && e->d_name[0] != '.')
                subdirs.push_back(abs_path + "/" + e->d_name);
        ::closedir(d);
        for (const auto& sub : subdirs)
            KEEL_TRY(destroy(sub));
    }
    for (int i = 0; i < 100; ++i) {
        if (::rmdir(abs_path.c_str()) == 0 || errno == ENOENT) return {};
        if (errno != EBUSY) break;
        std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
    return sys_error("remove cgroup " + abs_path);
}

long oom_kills(const std::string& abs_path) {
    std::string ev;
    if (!read_file((abs_path + "/memory.events").c_str(), ev)) return 0;
    for (const auto& line : split(ev, '\n'))
        if (starts_with(line, "oom_kill ")) return std::stol(line.substr(9));
    return 0;
}

} // namespace keel::runtime::cgroup
