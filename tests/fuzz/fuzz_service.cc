// Service files (services/NAME.yml, and the user's own under /var/lib/keel/services).
#include "fuzz_util.h"
#include "service/service_spec.h"

using namespace keel;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    auto spec = service::parse_service(fuzz::text(data, size), "/etc/keel/services/fuzz.yml");
    if (!spec) return 0;
    if (spec->command.empty()) fuzz::violated("a service without a command was accepted");
    for (const auto& m : spec->mounts)
        if (m.destination.empty() || m.destination[0] != '/')
            fuzz::violated("a relative mount destination was accepted");
    // Sizes and the CPU quota are what cgroup.cc writes: a wrapped or negative one would be a
    // limit nobody asked for.
    if (spec->resources.memory_max && *spec->resources.memory_max < 0)
        fuzz::violated("negative memory limit");
    if (spec->resources.cpu_quota && *spec->resources.cpu_quota < 0)
        fuzz::violated("negative CPU quota");
    if (spec->stop_signal < 1 || spec->stop_signal >= NSIG)
        fuzz::violated("stop_signal out of range");
    return 0;
}
