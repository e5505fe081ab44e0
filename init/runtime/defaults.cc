#include "runtime/defaults.h"

#include <sys/mount.h>

#include "common/strings.h"

namespace keel::runtime::defaults {

Mount mnt(const char* dest, const char* type, const char* src, unsigned long flags,
          const char* data) {
    Mount m;
    m.destination = dest;
    m.type = type;
    m.source = src;
    m.flags = flags;
    m.data = data;
    return m;
}

namespace {

constexpr unsigned long kSafe = MS_NOSUID | MS_NODEV | MS_NOEXEC;

} // namespace

std::vector<Mount> mounts() {
    return {
        mnt("/proc", "proc", "proc", kSafe),
        mnt("/dev", "tmpfs", "tmpfs", MS_NOSUID | MS_STRICTATIME, "mode=755,size=65536k"),
        mnt("/dev/pts", "devpts", "devpts", MS_NOSUID | MS_NOEXEC,
            "newinstance,ptmxmode=0666,mode=0620"),
        mnt("/dev/shm", "tmpfs", "shm", kSafe, "mode=1777,size=65536k"),
        mnt("/dev/mqueue", "mqueue", "mqueue", kSafe),
        // (In a user namespace that shares the host's network the runtime binds the host's
        // /sys read-only instead: only the network namespace's owner may mount sysfs.)
        mnt("/sys", "sysfs", "sysfs", kSafe | MS_RDONLY),
        mnt("/sys/fs/cgroup", "cgroup", "cgroup", kSafe | MS_RELATIME | MS_RDONLY),
    };
}

std::vector<Mount> oci_mounts(bool rootless) {
    std::vector<Mount> out = mounts();
    for (auto& m : out) {
        if (m.type == "proc") m.flags = 0;
        if (m.type == "devpts" && !rootless) m.data += ",gid=5";
        if (m.type == "sysfs" && rootless)
            m = mnt("/sys", "none", "/sys", MS_BIND | MS_REC | kSafe | MS_RDONLY);
    }
    return out;
}

std::vector<std::string> oci_options(const Mount& m) {
    static const std::pair<unsigned long, const char*> kFlags[] = {
        {MS_NOSUID, "nosuid"},           {MS_NOEXEC, "noexec"},     {MS_NODEV, "nodev"},
        {MS_STRICTATIME, "strictatime"}, {MS_RELATIME, "relatime"}, {MS_RDONLY, "ro"},
    };
    std::vector<std::string> out;
    if ((m.flags & (MS_BIND | MS_REC)) == (MS_BIND | MS_REC)) out.push_back("rbind");
    for (const auto& [flag, name] : kFlags)
        if (m.flags & flag) out.push_back(name);
    for (const auto& item : split(m.data, ','))
        if (!item.empty()) out.push_back(item);
    return out;
}

const std::vector<std::string>& masked_paths() {
    static const std::vector<std::string> paths = {
        "/proc/acpi",          "/proc/asound",     "/proc/kcore",       "/proc/keys",
        "/proc/latency_stats", "/proc/timer_list", "/proc/timer_stats", "/proc/sched_debug",
        "/sys/firmware",       "/proc/scsi"};
    return paths;
}

const std::vector<std::string>& readonly_paths() {
    static const std::vector<std::string> paths = {"/proc/bus", "/proc/fs", "/proc/irq",
                                                   "/proc/sys", "/proc/sysrq-trigger"};
    return paths;
}

} // namespace keel::runtime::defaults
