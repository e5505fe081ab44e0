// The configuration overlay (/var/lib/keel/config.yml, written by the user through `keel config
// set` or by hand) and single values as `keel config set KEY VALUE` and keel.config.KEY=VALUE
// give them.
#include "config/config.h"
#include "fuzz_util.h"

using namespace keel;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    std::string input = fuzz::text(data, size);
    if (auto doc = config::parse(input, "config.yml")) {
        // What keeld does with an overlay that validated.
        YAML::Node effective = config::merged(config::defaults(), *doc);
        for (const auto& k : config::keys()) {
            if (k.key.find('*') != std::string::npos) continue;
            if (auto v = config::get(effective, k.key)) (void)config::to_text(*v);
        }
        (void)config::to_yaml(effective);
    }
    // One value for one key: the first byte picks the key.
    if (size > 0) {
        const auto& keys = config::keys();
        std::string key = keys[data[0] % keys.size()].key;
        if (key.find('*') != std::string::npos) key = "services.console.enabled";
        auto v = config::value_for(key, input.substr(1));
        if (v) {
            YAML::Node doc = config::defaults();
            config::set(doc, key, *v);
            if (!config::validate(doc, "set"))
                fuzz::violated("value_for accepted a value validate() refuses: " + key);
            (void)config::to_text(*v);
        }
    }
    return 0;
}
