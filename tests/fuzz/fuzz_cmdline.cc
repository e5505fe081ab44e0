// The kernel command line as PID 1 reads it, and its keel.config.KEY=VALUE overrides applied to
// the configuration as config::load does.
#include "config/config.h"
#include "config/kernel_args.h"
#include "fuzz_util.h"

using namespace keel;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    auto k = config::parse_kernel_args(fuzz::text(data, size));
    if (k.state_label && k.state_label->empty()) fuzz::violated("an empty keel.state label");
    if (k.config.empty()) return 0;
    YAML::Node effective = config::defaults();
    for (const auto& [key, value] : k.config)
        if (auto v = config::value_for(key, value)) config::set(effective, key, *v);
    if (auto st = config::validate(effective, "cmdline"); !st)
        fuzz::violated("command-line overrides made an invalid configuration: " + st.error().str());
    return 0;
}
