#include "cli/options.h"

#include <algorithm>

#include <fmt/format.h>

#include "common/strings.h"

namespace keel::cli {

namespace {

const OptionSpec* find_long(const VerbSpec& verb, const std::string& name) {
    for (const auto& o : verb.options)
        if (o.name == name ||
            std::find(o.aliases.begin(), o.aliases.end(), name) != o.aliases.end())
            return &o;
    return nullptr;
}

const OptionSpec* find_short(const VerbSpec& verb, char letter) {
    for (const auto& o : verb.options)
        if (o.shorts.find(letter) != std::string::npos) return &o;
    return nullptr;
}

Error unknown(const VerbSpec& verb, const std::string& spelled, const std::string& name) {
    std::vector<std::string> names;
    for (const auto& o : verb.options) {
        names.push_back(o.name);
        names.insert(names.end(), o.aliases.begin(), o.aliases.end());
    }
    // A one-letter typo is as close to every other letter: suggest only for long names.
    std::string near = name.size() > 1 ? closest(name, names) : std::string();
    return plain_error(near.empty()
                           ? fmt::format("unknown option {}", spelled)
                           : fmt::format("unknown option {} (did you mean --{}?)", spelled, near));
}

} // namespace

Status Options::take(const OptionSpec& o, std::optional<std::string> value) {
    auto& slot = values_[o.name];
    if (!o.repeatable) slot.clear();
    slot.push_back(value.value_or(""));
    return {};
}

Result<Options> Options::parse(const VerbSpec& verb, const std::vector<std::string>& argv) {
    Options out;
    auto rest_positional = [&](size_t from) {
        out.positional_.insert(out.positional_.end(), argv.begin() + static_cast<long>(from),
                               argv.end());
    };
    for (size_t i = 0; i < argv.size(); ++i) {
        const std::string& arg = argv[i];
        if (arg == "--") {
            rest_positional(i + 1);
            break;
        }
        if (arg.size() < 2 || arg[0] != '-') {
            out.positional_.push_back(arg);
            if (!verb.options_first) continue;
            rest_positional(i + 1);
            break;
        }
        auto next = [&]() -> std::optional<std::string> {
            if (i + 1 >= argv.size()) return std::nullopt;
            return argv[++i];
        };
        bool two_dashes = arg[1] == '-';
        if (two_dashes || verb.single_dash_long) {
            std::string body = arg.substr(two_dashes ? 2 : 1);
            size_t eq = body.find('=');
            std::string name = body.substr(0, eq);
            std::string spelled = arg.substr(0, arg.size() - body.size()) + name;
            const OptionSpec* o =
                !two_dashes && name.size() == 1 ? find_short(verb, name[0]) : find_long(verb, name);
            if (!o) return unknown(verb, spelled, name);
            std::optional<std::string> value;
            if (eq != std::string::npos) {
                if (!o->takes_value)
                    return plain_error(fmt::format("option {} takes no value", spelled));
                value = body.substr(eq + 1);
            } else if (o->takes_value && !(value = next())) {
                return plain_error(fmt::format("option {} needs a value", spelled));
            }
            KEEL_TRY(out.take(*o, value));
            continue;
        }
        // A cluster of short options (-it, -dit); one that takes a value takes the rest of the
        // cluster (-eK=V, and -e=K=V as keel run always took it) or else the next argument.
        for (size_t j = 1; j < arg.size(); ++j) {
            std::string spelled = std::string("-") + arg[j];
            const OptionSpec* o = find_short(verb, arg[j]);
            if (!o) return unknown(verb, spelled, "");
            if (!o->takes_value) {
                KEEL_TRY(out.take(*o, std::nullopt));
                continue;
            }
            std::optional<std::string> value;
            if (j + 1 < arg.size())
                value = arg.substr(arg[j + 1] == '=' ? j + 2 : j + 1);
            else if (!(value = next()))
                return plain_error(fmt::format("option {} needs a value", spelled));
            KEEL_TRY(out.take(*o, value));
            break;
        }
    }
    return out;
}

std::optional<std::string> Options::value(const std::string& name) const {
    auto it = values_.find(name);
    if (it == values_.end() || it->second.empty()) return std::nullopt;
    return it->second.back();
}

std::string Options::value_or(const std::string& name, const std::string& fallback) const {
    return value(name).value_or(fallback);
}

std::vector<std::string> Options::values(const std::string& name) const {
    auto it = values_.find(name);
    return it == values_.end() ? std::vector<std::string>{} : it->second;
}

} // namespace keel::cli
