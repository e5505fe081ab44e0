#include "runtime/spec.h"

#include <sched.h>
#include <sys/mount.h>

namespace keel::runtime {

bool Mount::bind() const {
    return type == "bind" || (flags & MS_BIND);
}

bool ContainerSpec::has_namespace(NsType t) const {
    return find_namespace(t) != nullptr;
}

const Namespace* ContainerSpec::find_namespace(NsType t) const {
    for (const auto& ns : namespaces)
        if (ns.type == t) return &ns;
    return nullptr;
}

namespace {
struct NsInfo {
    NsType type;
    const char* oci;
    const char* proc;
    int flag;
};
constexpr NsInfo kNamespaces[] = {
    {NsType::mount, "mount", "mnt", CLONE_NEWNS},
    {NsType::pid, "pid", "pid", CLONE_NEWPID},
    {NsType::uts, "uts", "uts", CLONE_NEWUTS},
    {NsType::ipc, "ipc", "ipc", CLONE_NEWIPC},
    {NsType::net, "network", "net", CLONE_NEWNET},
    {NsType::cgroup, "cgroup", "cgroup", CLONE_NEWCGROUP},
    {NsType::user, "user", "user", CLONE_NEWUSER},
    {NsType::time, "time", "time", CLONE_NEWTIME},
};
const NsInfo& info(NsType t) {
    for (const auto& i : kNamespaces)
        if (i.type == t) return i;
    return kNamespaces[0];
}
} // namespace

const char* ns_name(NsType t) {
    return info(t).oci;
}
const char* ns_proc_name(NsType t) {
    return info(t).proc;
}
int ns_clone_flag(NsType t) {
    return info(t).flag;
}

std::optional<NsType> ns_from_name(const std::string& name) {
    for (const auto& i : kNamespaces)
        if (name == i.oci || name == i.proc) return i.type;
    if (name == "net") return NsType::net;
    return std::nullopt;
}

} // namespace keel::runtime
