#include "runtime/namespaces.h"

#include <fcntl.h>
#include <sched.h>
#include <unistd.h>

#include <fmt/format.h>

namespace keel::runtime::ns {

int clone_flags(const ContainerSpec& spec) {
    int flags = 0;
    for (const auto& n : spec.namespaces)
        if (n.path.empty()) flags |= ns_clone_flag(n.type);
    return flags;
}

static bool joined_by_parent(NsType t) {
    return t == NsType::pid || t == NsType::time;
}

ChildrenNsGuard::~ChildrenNsGuard() {
    if (saved_pid_) ::setns(saved_pid_.get(), CLONE_NEWPID);
    if (saved_time_) ::setns(saved_time_.get(), CLONE_NEWTIME);
}

Result<ChildrenNsGuard> enter_for_children(const ContainerSpec& spec) {
    ChildrenNsGuard guard;
    for (const auto& n : spec.namespaces) {
        if (n.path.empty() || !joined_by_parent(n.type)) continue;
        Fd target(::open(n.path.c_str(), O_RDONLY | O_CLOEXEC));
        if (!target) return sys_error(fmt::format("open {} namespace {}", ns_name(n.type), n.path));
        const char* self = n.type == NsType::pid ? "/proc/self/ns/pid" : "/proc/self/ns/time";
        Fd saved(::open(self, O_RDONLY | O_CLOEXEC));
        if (!saved) return sys_error(fmt::format("open {}", self));
        if (::setns(target.get(), ns_clone_flag(n.type)) < 0)
            return sys_error(fmt::format("join {} namespace {}", ns_name(n.type), n.path));
        (n.type == NsType::pid ? guard.saved_pid_ : guard.saved_time_) = std::move(saved);
    }
    return guard;
}

static Status write_map(pid_t pid, const char* file, const std::vector<IdMap>& maps) {
    if (maps.empty()) return {};
    std::string text;
    for (const auto& m : maps)
        text += fmt::format("{} {} {}\n", m.inside, m.outside, m.count);
    std::string path = fmt::format("/proc/{}/{}", pid, file);
    if (!write_file(path.c_str(), text)) return sys_error(fmt::format("write {}", path));
    return {};
}

Status write_id_maps(pid_t pid, const ContainerSpec& spec) {
    KEEL_TRY(write_map(pid, "uid_map", spec.uid_maps));
    return write_map(pid, "gid_map", spec.gid_maps);
}

Status join_by_path(const ContainerSpec& spec) {
    // The user namespace first: joining it grants the capabilities needed for the others.
    std::vector<const Namespace*> order;
    if (auto* u = spec.find_namespace(NsType::user); u && !u->path.empty()) order.push_back(u);
    for (const auto& n : spec.namespaces)
        if (!n.path.empty() && n.type != NsType::user && !joined_by_parent(n.type))
            order.push_back(&n);
    // Every namespace is opened before any is joined: once in the target's mount namespace,
    // /proc/PID/ns/... paths of the host's view no longer resolve.
    std::vector<Fd> fds;
    for (const Namespace* n : order) {
        fds.emplace_back(::open(n->path.c_str(), O_RDONLY | O_CLOEXEC));
        if (!fds.back()) return sys_error(fmt::format("open {}", n->path));
    }
    for (size_t i = 0; i < order.size(); ++i)
        if (::setns(fds[i].get(), ns_clone_flag(order[i]->type)) < 0)
            return sys_error(fmt::format("setns {} {}", ns_name(order[i]->type), order[i]->path));
    return {};
}

} // namespace keel::runtime::ns
