#include "cli/args.h"

#include <fmt/format.h>

#include "common/strings.h"

namespace keel::cli {

Result<Args> Args::parse(const std::vector<std::string>& argv, const std::vector<Option>& options) {
    Args out;
    auto find = [&](const std::string& name, char short_name) -> const Option* {
        for (const auto& o : options)
            if ((!name.empty() && o.name == name) || (short_name && o.short_name == short_name)) return &o;
        return nullptr;
    };
    auto unknown = [&](const std::string& arg, const std::string& name) -> Error {
        std::vector<std::string> names;
        for (const auto& o : options) names.push_back(o.name);
        std::string near = closest(name, names);
        return plain_error(near.empty() ? fmt::format("unknown option {}", arg)
                                        : fmt::format("unknown option {} (did you mean --{}?)", arg, near));
    };
    for (size_t i = 0; i < argv.size(); ++i) {
        const std::string& arg = argv[i];
        if (arg == "--") {
            out.positional_.insert(out.positional_.end(), argv.begin() + static_cast<long>(i) + 1, argv.end());
            break;
        }
        if (arg.size() < 2 || arg[0] != '-') {
            out.positional_.push_back(arg);
            continue;
        }
        std::string body = arg.substr(arg[1] == '-' ? 2 : 1);
        std::string name = body, inline_value;
        bool has_inline = false;
        if (auto eq = body.find('='); eq != std::string::npos) {
            name = body.substr(0, eq);
            inline_value = body.substr(eq + 1);
            has_inline = true;
        }
        const Option* o = (arg[1] != '-' && name.size() == 1) ? find("", name[0]) : find(name, 0);
        if (!o) return unknown(arg, name);
        if (!o->takes_value) {
            if (has_inline) return plain_error(fmt::format("option --{} takes no value", o->name));
            out.values_[o->name] = "";
            continue;
        }
        if (!has_inline) {
            if (i + 1 >= argv.size()) return plain_error(fmt::format("option --{} needs a value", o->name));
            inline_value = argv[++i];
        }
        out.values_[o->name] = inline_value;
    }
    return out;
}

std::optional<std::string> Args::value(const std::string& name) const {
    auto it = values_.find(name);
    if (it == values_.end()) return std::nullopt;
    return it->second;
}

std::string Args::value_or(const std::string& name, const std::string& fallback) const {
    return value(name).value_or(fallback);
}

} // namespace keel::cli
