#include "runtime/sysctl.h"

#include <fcntl.h>
#include <linux/magic.h>
#include <linux/openat2.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <algorithm>

#include "common/fd.h"
#include "common/strings.h"

namespace keel::runtime::sysctl {

namespace {

// kernel.* entries of the IPC namespace.
const char* const kIpcKeys[] = {"kernel.msgmax", "kernel.msgmnb",         "kernel.msgmni",
                                "kernel.sem",    "kernel.shmall",         "kernel.shmmax",
                                "kernel.shmmni", "kernel.shm_rmid_forced"};

// net.* entries the kernel registers for the initial network namespace only: a container
// in its own network namespace has no such file, and one in the host's would change the host.
const char* const kGlobalNetKeys[] = {
    "net.core.bpf_jit_enable",
    "net.core.bpf_jit_harden",
    "net.core.bpf_jit_kallsyms",
    "net.core.bpf_jit_limit",
    "net.core.busy_poll",
    "net.core.busy_read",
    "net.core.default_qdisc",
    "net.core.dev_weight",
    "net.core.dev_weight_rx_bias",
    "net.core.dev_weight_tx_bias",
    "net.core.flow_limit_cpu_bitmap",
    "net.core.flow_limit_table_len",
    "net.core.high_order_alloc_disable",
    "net.core.max_skb_frags",
    "net.core.message_burst",
    "net.core.message_cost",
    "net.core.netdev_budget",
    "net.core.netdev_budget_usecs",
    "net.core.netdev_max_backlog",
    "net.core.netdev_rss_key",
    "net.core.netdev_tstamp_prequeue",
    "net.core.rmem_default",
    "net.core.rmem_max",
    "net.core.rps_sock_flow_entries",
    "net.core.warnings",
    "net.core.wmem_default",
    "net.core.wmem_max",
    "net.ipv4.tcp_mem",
    "net.ipv4.udp_mem",
    "net.nf_conntrack_max",
    "net.netfilter.nf_conntrack_max",
    "net.netfilter.nf_conntrack_buckets",
};

bool listed(const std::string& key, const auto& table) {
    return std::any_of(std::begin(table), std::end(table), [&](const char* k) { return key == k; });
}

bool same_file(const std::string& a, const char* b) {
    struct stat sa {
    }, sb{};
    return ::stat(a.c_str(), &sa) == 0 && ::stat(b, &sb) == 0 && sa.st_dev == sb.st_dev &&
           sa.st_ino == sb.st_ino;
}

// The container's own namespace of type `t`: a new one, or one joined by path that is not
// the runtime's own (joining /proc/1/ns/net is the host's network).
std::optional<std::string> not_owned(const ContainerSpec& spec, NsType t, const char* proc_name) {
    const Namespace* ns = spec.find_namespace(t);
    std::string what = std::string(ns_name(t)) + " namespace";
    if (!ns) return "needs its own " + what + " in linux.namespaces (without one it is the host's)";
    if (!ns->path.empty() &&
        same_file(ns->path, (std::string("/proc/self/ns/") + proc_name).c_str()))
        return "the " + what + " at " + ns->path + " is the runtime's own (the host's)";
    return std::nullopt;
}

bool well_formed(const std::string& key) {
    if (key.empty() || key.front() == '.' || key.back() == '.') return false;
    if (key.find("..") != std::string::npos) return false;
    return std::all_of(key.begin(), key.end(), [](char c) {
        return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
               c == '_' || c == '-' || c == '.' || c == '@' || c == ':';
    });
}

} // namespace

std::optional<std::string> refusal(const std::string& key, const ContainerSpec& spec) {
    if (!well_formed(key))
        return "not a sysctl name (dotted, as kernel.msgmax: letters, digits, '_', '-')";
    if (listed(key, kIpcKeys) || starts_with(key, "fs.mqueue."))
        return not_owned(spec, NsType::ipc, "ipc");
    if (key == "kernel.hostname" || key == "kernel.domainname")
        return not_owned(spec, NsType::uts, "uts");
    if (starts_with(key, "net.")) {
        if (listed(key, kGlobalNetKeys))
            return "not namespaced: it is the host's whatever the network namespace";
        return not_owned(spec, NsType::net, "net");
    }
    return "not namespaced: setting it would change the host (a container may set only the IPC "
           "(kernel.msg*, kernel.sem, kernel.shm*, fs.mqueue.*), UTS (kernel.hostname, "
           "kernel.domainname) and network (net.*) sysctls of namespaces it owns)";
}

Status apply(const ContainerSpec& spec) {
    if (spec.sysctl.empty()) return {};
    Fd proc = open_at2(AT_FDCWD, "/proc", O_PATH | O_DIRECTORY,
                       RESOLVE_NO_SYMLINKS | RESOLVE_NO_MAGICLINKS);
    if (!proc) return sys_error("sysctl: open the container's /proc (without following symlinks)");
    struct statfs sf {};
    if (::fstatfs(proc.get(), &sf) < 0) return sys_error("sysctl: statfs /proc");
    if (sf.f_type != PROC_SUPER_MAGIC)
        return sys_error("sysctl: the container's /proc is not a procfs (mount proc on /proc)",
                         EINVAL);
    for (const auto& [key, value] : spec.sysctl) {
        std::string rel = "sys/" + key;
        std::replace(rel.begin() + 4, rel.end(), '.', '/');
        // On the proc mount itself: nothing mounted over /proc/sys may take the write.
        Fd f = open_at2(proc.get(), rel.c_str(), O_WRONLY,
                        RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS | RESOLVE_NO_MAGICLINKS |
                            RESOLVE_NO_XDEV);
        if (!f) return sys_error("sysctl " + key + ": open /proc/" + rel);
        if (::write(f.get(), value.data(), value.size()) != static_cast<ssize_t>(value.size()))
            return sys_error("sysctl " + key + "=" + value);
    }
    return {};
}

} // namespace keel::runtime::sysctl
