// OCI config.json, as `keel runtime create|run` reads it from a bundle.
#include <sys/stat.h>

#include "common/strings.h"
#include "fuzz_util.h"
#include "runtime/oci.h"

using namespace keel;

namespace {
// A bundle with a rootfs directory, so that root.path "rootfs" resolves and parsing goes on to
// the sections after it.
const std::string& bundle() {
    static const std::string dir = [] {
        std::string d = fuzz::scratch_dir("oci");
        ::mkdir((d + "/rootfs").c_str(), 0755);
        return d;
    }();
    return dir;
}
} // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    auto spec = runtime::oci::parse_config(fuzz::text(data, size), bundle());
    if (!spec) return 0;
    if (spec->args.empty()) fuzz::violated("a process without args was accepted");
    if (spec->cwd.empty() || spec->cwd[0] != '/') fuzz::violated("a relative cwd was accepted");
    for (const auto& m : spec->mounts)
        if (m.destination.empty() || m.destination[0] != '/')
            fuzz::violated("a relative mount destination was accepted");
    for (const auto& part : keel::split(spec->cgroup_path, '/'))
        if (part == "..") fuzz::violated("a cgroupsPath with .. was accepted");
    return 0;
}
