#include "runtime/capabilities.h"

#include <linux/capability.h>
#include <sys/capability.h>
#include <sys/prctl.h>

#include <cerrno>
#include <string>

#include "common/fd.h"
#include "runtime/oci.h"

namespace keel::runtime::caps {

int last_cap() noexcept {
    static int cached = -1;
    if (cached >= 0) return cached;
    std::string s;
    cached = read_file("/proc/sys/kernel/cap_last_cap", s) ? std::stoi(s) : CAP_LAST_CAP;
    return cached;
}

std::vector<int> docker_default() {
    return {CAP_CHOWN,   CAP_DAC_OVERRIDE, CAP_FSETID,           CAP_FOWNER,
            CAP_MKNOD,   CAP_NET_RAW,      CAP_SETGID,           CAP_SETUID,
            CAP_SETFCAP, CAP_SETPCAP,      CAP_NET_BIND_SERVICE, CAP_SYS_CHROOT,
            CAP_KILL,    CAP_AUDIT_WRITE};
}

const std::vector<std::string>& docker_default_names() {
    static const std::vector<std::string> names = [] {
        std::vector<std::string> out;
        for (int cap : docker_default())
            out.push_back(oci::capability_name(cap));
        return out;
    }();
    return names;
}

static bool contains(const std::vector<int>& set, int cap) {
    for (int c : set)
        if (c == cap) return true;
    return false;
}

int drop_bounding(const Capabilities& c) noexcept {
    for (int cap = 0; cap <= last_cap(); ++cap) {
        if (contains(c.bounding, cap)) continue;
        if (::prctl(PR_CAPBSET_DROP, cap, 0, 0, 0) < 0 && errno != EINVAL) return errno;
    }
    return 0;
}

int apply(const Capabilities& c, int also_held) noexcept {
    cap_t caps = cap_init();
    if (!caps) return errno ? errno : ENOMEM;
    auto set = [&](cap_flag_t flag, const std::vector<int>& list) {
        for (int v : list) {
            cap_value_t cv = v;
            cap_set_flag(caps, flag, 1, &cv, CAP_SET);
        }
    };
    set(CAP_EFFECTIVE, c.effective);
    set(CAP_PERMITTED, c.permitted);
    set(CAP_INHERITABLE, c.inheritable);
    if (also_held >= 0) {
        cap_value_t cv = also_held;
        cap_set_flag(caps, CAP_EFFECTIVE, 1, &cv, CAP_SET);
        cap_set_flag(caps, CAP_PERMITTED, 1, &cv, CAP_SET);
    }
    int err = cap_set_proc(caps) < 0 ? errno : 0;
    cap_free(caps);
    if (err) return err;
    if (::prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0) < 0) return errno;
    // The kernel keeps an ambient capability only while it is both permitted and inheritable.
    // `runc spec` asks for ambient capabilities with an empty inheritable set; like runc and
    // crun, those are left out rather than failing the container.
    for (int v : c.ambient) {
        if (!contains(c.permitted, v) || !contains(c.inheritable, v)) continue;
        if (::prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_RAISE, v, 0, 0) < 0) return errno;
    }
    return 0;
}

} // namespace keel::runtime::caps
