#include "config/kernel_cmdline.h"

#include <fmt/format.h>
#include <yaml-cpp/yaml.h>

namespace keel::config {

namespace {

Error at(const std::string& origin, const YAML::Node& n, const std::string& what) {
    return plain_error(fmt::format("{}:{}: {}", origin, n.Mark().line + 1, what));
}

Result<std::vector<std::pair<std::string, std::string>>>
words(const YAML::Node& n, const std::string& origin, const std::string& key) {
    std::vector<std::pair<std::string, std::string>> out;
    if (!n) return out;
    if (!n.IsMap()) return at(origin, n, key + ": expected a mapping of word: reason");
    for (const auto& kv : n) {
        if (!kv.second.IsScalar())
            return at(origin, kv.second,
                      key + "." + kv.first.as<std::string>() + ": expected the reason");
        out.emplace_back(kv.first.as<std::string>(), kv.second.as<std::string>());
    }
    return out;
}

} // namespace

Result<KernelCmdline> parse_kernel_cmdline(const std::string& yaml_text,
                                           const std::string& origin) {
    try {
        YAML::Node root = YAML::Load(yaml_text);
        if (!root.IsMap())
            return at(origin, root, "expected a mapping with boot, hardening and weakening");
        KernelCmdline k;
        for (const auto& kv : root) {
            auto key = kv.first.as<std::string>();
            if (key != "boot" && key != "hardening" && key != "weakening")
                return at(origin, kv.first,
                          "unknown key '" + key + "' (boot, hardening, weakening)");
        }
        auto boot = words(root["boot"], origin, "boot");
        if (!boot) return boot.error();
        auto hardening = words(root["hardening"], origin, "hardening");
        if (!hardening) return hardening.error();
        k.boot = std::move(*boot);
        k.hardening = std::move(*hardening);
        if (auto w = root["weakening"]) {
            if (!w.IsSequence()) return at(origin, w, "weakening: expected a list of words");
            for (const auto& x : w) {
                if (!x.IsScalar()) return at(origin, x, "weakening: expected a word");
                k.weakening.push_back(x.as<std::string>());
            }
        }
        return k;
    } catch (const YAML::Exception& e) {
        return plain_error(fmt::format("{}:{}: {}", origin, e.mark.line + 1, e.msg));
    }
}

} // namespace keel::config
