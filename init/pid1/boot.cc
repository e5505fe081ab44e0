#include "pid1/boot.h"

#include <blkid/blkid.h>
#include <fcntl.h>
#include <net/if.h>
#include <sys/ioctl.h>
#include <sys/mount.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <sys/syscall.h>
#include <sys/utsname.h>
#include <unistd.h>

#include <algorithm>
#include <condition_variable>
#include <cstring>
#include <map>
#include <mutex>
#include <thread>

#include <fmt/format.h>

#include "common/clock.h"
#include "common/fd.h"
#include "common/quota.h"
#include "common/strings.h"

#ifndef MODULE_INIT_COMPRESSED_FILE
#define MODULE_INIT_COMPRESSED_FILE 4
#endif

namespace keel::pid1::boot {

static bool is_mountpoint(const char* path) {
    struct stat st {
    }, parent{};
    if (::stat(path, &st) < 0) return false;
    std::string up = std::string(path) + "/..";
    if (::stat(up.c_str(), &parent) < 0) return false;
    return st.st_dev != parent.st_dev || st.st_ino == parent.st_ino;
}

static Status mount_if_missing(const char* src, const char* dir, const char* type,
                               unsigned long flags, const char* data, bool optional = false) {
    ::mkdir(dir, 0755);
    if (is_mountpoint(dir)) return {};
    if (::mount(src, dir, type, flags, data) < 0) {
        if (optional && (errno == ENODEV || errno == ENOENT)) return {};
        return sys_error(fmt::format("mount {} on {}", type, dir));
    }
    return {};
}

Status mount_early() {
    constexpr unsigned long secure = MS_NOSUID | MS_NODEV | MS_NOEXEC;
    KEEL_TRY(mount_if_missing("proc", "/proc", "proc", secure, "hidepid=0"));
    KEEL_TRY(mount_if_missing("sysfs", "/sys", "sysfs", secure, nullptr));
    KEEL_TRY(mount_if_missing("devtmpfs", "/dev", "devtmpfs", MS_NOSUID | MS_NOEXEC, "mode=0755"));
    KEEL_TRY(mount_if_missing("devpts", "/dev/pts", "devpts", MS_NOSUID | MS_NOEXEC,
                              "gid=5,mode=0620,ptmxmode=0666"));
    KEEL_TRY(mount_if_missing("shm", "/dev/shm", "tmpfs", secure, "mode=1777"));
    KEEL_TRY(mount_if_missing("run", "/run", "tmpfs", secure, "mode=0755"));
    KEEL_TRY(mount_if_missing("tmp", "/tmp", "tmpfs", secure, "mode=1777"));
    // Pure cgroup v2; nsdelegate makes a cgroup namespace a delegation boundary, which the
    // user runtime's subtree relies on.
    KEEL_TRY(mount_if_missing("cgroup2", "/sys/fs/cgroup", "cgroup2", secure, "nsdelegate"));
    KEEL_TRY(mount_if_missing("securityfs", "/sys/kernel/security", "securityfs", secure, nullptr,
                              true));
    ::mkdir("/run/keel", 0755);
    ::mkdir("/var", 0755);
    ::mkdir("/var/lib", 0755);
    ::mkdir("/var/lib/keel", 0700);
    // Containers get private mount trees of their own; / itself stays private so nothing
    // they mount can propagate back.
    // (EINVAL: / is not a mount point, as in a chroot test sysroot; nothing can propagate.)
    if (::mount(nullptr, "/", nullptr, MS_REC | MS_PRIVATE, nullptr) < 0 && errno != EINVAL)
        return sys_error("make / private");
    return {};
}

Status protect_binary() {
    // CVE-2019-5736: the keel binary bound read-only on itself, so no process that reaches
    // it through /proc/PID/exe (a container's, while the runtime sets it up) can write it:
    // EROFS. The runtime sees the read-only mount and skips its sealed memfd copy.
    char exe[PATH_MAX];
    ssize_t n = ::readlink("/proc/self/exe", exe, sizeof exe - 1);
    if (n <= 0) return sys_error("readlink /proc/self/exe");
    exe[n] = '\0';
    if (::mount(exe, exe, nullptr, MS_BIND, nullptr) < 0)
        return sys_error(fmt::format("bind {}", exe));
    if (::mount(nullptr, exe, nullptr, MS_BIND | MS_REMOUNT | MS_RDONLY | MS_NOSUID | MS_NODEV,
                nullptr) < 0) {
        Error e = sys_error(fmt::format("make {} read-only", exe));
        (void)::umount2(exe, MNT_DETACH);
        return e;
    }
    return {};
}

static std::string release() {
    utsname u{};
    ::uname(&u);
    return u.release;
}

ModuleReport load_modules(const config::modules::AllowList& list) {
    ModuleReport r;
    std::string dir = "/lib/modules/" + release();
    std::string dep_text, builtin_text;
    read_file((dir + "/modules.dep").c_str(), dep_text);
    read_file((dir + "/modules.builtin").c_str(), builtin_text);
    auto table = config::modules::parse_modules_dep(dep_text);
    std::vector<std::string> builtin;
    for (const auto& line : split(builtin_text, '\n'))
        if (!line.empty()) builtin.push_back(config::modules::module_name(line));
    std::vector<std::string> wanted;
    for (const auto& m : list.modules)
        wanted.push_back(m.name);
    auto order = config::modules::load_order(table, wanted, builtin, r.missing);

    // Loaded by a few threads, each module once its dependencies are in: most of the time goes
    // to checking signatures and relocating, which the kernel does in parallel (a boot under
    // TCG spends most of init's time here).
    enum class St { pending, loading, loaded, failed };
    std::map<std::string, St> state;
    for (const auto& n : order)
        state[n] = St::pending;
    std::map<std::string, std::string> error;
    std::mutex mu;
    std::condition_variable cv;
    auto load_one = [&](const std::string& name) -> std::string {
        std::string params;
        for (const auto& m : list.modules)
            if (m.name == name) params = m.params;
        std::string path = dir + "/" + table.path.at(name);
        Fd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
        if (!fd) return sys_error(name + ": open " + path).str();
        bool compressed = path.ends_with(".xz") || path.ends_with(".zst") || path.ends_with(".gz");
        long rc = ::syscall(SYS_finit_module, fd.get(), params.c_str(),
                            compressed ? MODULE_INIT_COMPRESSED_FILE : 0);
        if (rc < 0 && errno != EEXIST) return sys_error(name).str();
        return {};
    };
    auto worker = [&]() {
        std::unique_lock lock(mu);
        for (;;) {
            const std::string* next = nullptr;
            bool any_pending = false;
            for (const auto& n : order) {
                if (state[n] != St::pending) continue;
                any_pending = true;
                bool ready = true;
                auto d = table.deps.find(n);
                if (d != table.deps.end())
                    for (const auto& dep : d->second)
                        if (state.count(dep) &&
                            (state[dep] == St::pending || state[dep] == St::loading))
                            ready = false;
                if (ready) {
                    next = &n;
                    break;
                }
            }
            if (!any_pending) return;
            if (!next) {
                cv.wait(lock);
                continue;
            }
            state[*next] = St::loading;
            lock.unlock();
            std::string why;
            int64_t t0 = now_us();
            try {
                why = load_one(*next);
            } catch (...) {
                why = *next + ": unexpected error";
            }
            int64_t t1 = now_us();
            lock.lock();
            r.load_us[*next] = t1 - t0;
            state[*next] = why.empty() ? St::loaded : St::failed;
            if (!why.empty()) error[*next] = why;
            cv.notify_all();
        }
    };
    unsigned n = std::clamp(std::thread::hardware_concurrency(), 1u, 4u);
    std::vector<std::thread> threads;
    try {
        for (unsigned i = 1; i < n; ++i)
            threads.emplace_back(worker);
    } catch (...) {
        // No threads: this one does all the work.
    }
    worker();
    for (auto& t : threads)
        t.join();
    for (const auto& name : order) {
        if (state[name] == St::loaded)
            r.loaded.push_back(name);
        else
            r.failed.push_back(error[name]);
    }
    return r;
}

Status lock_modules() {
    if (!write_file("/proc/sys/kernel/modules_disabled", "1"))
        return sys_error("kernel.modules_disabled=1");
    return {};
}

Status set_hostname(const std::string& name) {
    if (::sethostname(name.data(), name.size()) < 0) return sys_error("sethostname " + name);
    return {};
}

Status loopback_up() {
    Fd s(::socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0));
    if (!s) return sys_error("socket");
    ifreq ifr{};
    std::strncpy(ifr.ifr_name, "lo", IFNAMSIZ - 1);
    if (::ioctl(s.get(), SIOCGIFFLAGS, &ifr) < 0) return sys_error("lo: SIOCGIFFLAGS");
    ifr.ifr_flags = static_cast<short>(ifr.ifr_flags | IFF_UP | IFF_RUNNING);
    if (::ioctl(s.get(), SIOCSIFFLAGS, &ifr) < 0) return sys_error("lo: up");
    return {};
}

Result<std::string> mount_state(const std::string& label) {
    // Superblocks are read directly (libblkid), no udev: the devices exist in devtmpfs.
    blkid_cache cache = nullptr;
    if (blkid_get_cache(&cache, "/dev/null") < 0) return plain_error("blkid cache");
    blkid_probe_all(cache);
    char* dev = blkid_get_devname(cache, "LABEL", label.c_str());
    blkid_put_cache(cache);
    if (!dev) return plain_error(fmt::format("no filesystem labelled {}", label));
    std::string device = dev;
    ::free(dev);
    // prjquota enforces the project quota that bounds the user runtime's share (see
    // bound_user_state); a filesystem made without the `quota,project` features refuses the
    // option (EINVAL) and is mounted without it.
    constexpr unsigned long flags = MS_NOSUID | MS_NODEV | MS_NOEXEC;
    if (::mount(device.c_str(), "/var/lib/keel", "ext4", flags, "prjquota") < 0 &&
        ::mount(device.c_str(), "/var/lib/keel", "ext4", flags, nullptr) < 0)
        return sys_error(fmt::format("mount {} ({}) on /var/lib/keel", device, label));
    return device;
}

Status bound_user_state(const std::string& device, uid_t owner) {
    struct statvfs vfs {};
    if (::statvfs("/var/lib/keel", &vfs) < 0) return sys_error("statvfs /var/lib/keel");
    auto limits = quota::user_state_limits(uint64_t(vfs.f_blocks) * vfs.f_frsize, vfs.f_files);
    return quota::bound_dir(device, "/var/lib/keel/user", owner, limits);
}

Status mount_state_tmpfs() {
    // 0711, as a state partition's root is searchable: the user runtime, root only in its own
    // user namespace, reaches /var/lib/keel/user through it (nobody may list it).
    if (::mount("state", "/var/lib/keel", "tmpfs", MS_NOSUID | MS_NODEV | MS_NOEXEC, "mode=0711") <
        0)
        return sys_error("mount tmpfs on /var/lib/keel");
    return {};
}

} // namespace keel::pid1::boot
