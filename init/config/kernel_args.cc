#include "config/kernel_args.h"

namespace keel::config {

std::vector<std::string> split_kernel_args(const std::string& text) {
    std::vector<std::string> words;
    std::string cur;
    bool quoted = false, any = false;
    for (char c : text) {
        if (c == '"') {
            quoted = !quoted;
            any = true;
        } else if (!quoted && (c == ' ' || c == '\n' || c == '\t')) {
            if (any) words.push_back(cur);
            cur.clear();
            any = false;
        } else {
            cur += c;
            any = true;
        }
    }
    if (any) words.push_back(cur);
    return words;
}

static bool truthy(const std::string& v) {
    return v.empty() || v == "1" || v == "yes" || v == "true" || v == "on";
}

KernelArgs parse_kernel_args(const std::string& text) {
    KernelArgs k;
    for (const auto& w : split_kernel_args(text)) {
        if (w.rfind("keel.", 0) != 0) continue;
        auto eq = w.find('=');
        std::string key = w.substr(5, eq == std::string::npos ? std::string::npos : eq - 5);
        std::string value = eq == std::string::npos ? "" : w.substr(eq + 1);
        if (key == "state" && !value.empty())
            k.state_label = value;
        else if (key == "debug")
            k.debug = truthy(value);
        else if (key == "recovery")
            k.recovery = truthy(value);
        else if (key == "autologin")
            k.autologin = truthy(value);
        else if (key.rfind("config.", 0) == 0 && key.size() > 7 && eq != std::string::npos)
            k.config[key.substr(7)] = value;
        else
            k.unknown_keel.push_back(w);
    }
    return k;
}

} // namespace keel::config
