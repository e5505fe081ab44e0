// modules.dep (from the kernel's module tree) and the module allow-list (config/modules.yml),
// and the load order PID 1 computes from both.
#include <algorithm>
#include <set>

#include "config/modules_list.h"
#include "fuzz_util.h"

using namespace keel;
using namespace keel::config;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    std::string input = fuzz::text(data, size);
    auto table = modules::parse_modules_dep(input);
    std::vector<std::string> wanted, missing;
    for (const auto& [name, path] : table.path)
        wanted.push_back(name);
    wanted.push_back("not_in_the_table");
    auto order = modules::load_order(table, wanted, {"builtin"}, missing);
    std::set<std::string> seen;
    for (const auto& n : order)
        if (!seen.insert(n).second) fuzz::violated("module " + n + " loaded twice");
    // Dependencies come first, unless a cycle forced a cut.
    auto allow = modules::parse_allow_list(input, "modules.yml");
    if (allow) {
        std::vector<std::string> names;
        for (const auto& r : allow->modules) {
            if (r.name.empty()) fuzz::violated("an allow-list entry without a name");
            names.push_back(r.name);
        }
        (void)modules::load_order(table, names, {}, missing);
    }
    return 0;
}
