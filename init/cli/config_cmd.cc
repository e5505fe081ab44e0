// `keel config ...`: the system configuration, through keeld (the state partition is not
// visible from the console container). `validate FILE` checks a file locally.
#include <cstdio>

#include <fmt/format.h>

#include "cli/commands.h"
#include "cli/options.h"
#include "common/fd.h"
#include "config/config.h"

namespace keel::cli {

using nlohmann::json;

static const char* kConfigUsage = R"(usage: keel config COMMAND

  get KEY                 the value in use (defaults + /var/lib/keel/config.yml + kernel
                          command line); KEY may name a section: keel config get network
  set KEY VALUE           validated, then written atomically to /var/lib/keel/config.yml;
                          says when it takes effect. VALUE is YAML: true, 10.0.0.5/24, [a, b]
  validate [FILE]         check FILE, or the overlay on the state partition
  export                  the whole configuration in use, as YAML
  keys                    every key, its type and its default
)";

static int fail(const std::string& msg, int code = 1) {
    std::fprintf(stderr, "keel: %s\n", msg.c_str());
    return code;
}

int config_main(const std::vector<std::string>& argv) {
    // Options end at the subcommand: a VALUE may start with a dash (keel config set k -5).
    auto parsed = Options::parse({"config", {{"help", "h"}}, true}, argv);
    if (!parsed) return fail("config: " + parsed.error().str(), 2);
    const std::vector<std::string>& args = parsed->positional();
    if (args.empty() || parsed->flag("help") || args[0] == "help") {
        bool asked = parsed->flag("help") || !args.empty();
        std::fputs(kConfigUsage, asked ? stdout : stderr);
        return asked ? 0 : 2;
    }
    const std::string& cmd = args[0];
    auto need = [&](size_t n, const char* what) {
        return args.size() == n + 1 ? 0 : fail(fmt::format("config {} needs {}", cmd, what), 2);
    };
    if (cmd == "keys") {
        for (const auto& k : config::keys())
            std::printf("%-22s %-8s %s\n", k.key.c_str(),
                        k.default_yaml.empty() ? "-" : k.default_yaml.c_str(), k.help.c_str());
        return 0;
    }
    if (cmd == "get") {
        if (int e = need(1, "a KEY")) return e;
        auto r = system_request({{"cmd", "config_get"}, {"key", args[1]}});
        if (!r) return fail(r.error().str());
        if ((*r)["scalar"].get<bool>())
            std::printf("%s\n", (*r)["value"].get<std::string>().c_str());
        else
            std::fputs((*r)["yaml"].get<std::string>().c_str(), stdout);
        return 0;
    }
    if (cmd == "set") {
        if (int e = need(2, "a KEY and a VALUE")) return e;
        // Checked here first, so a typo is caught even when keeld is not running.
        if (auto v = config::value_for(args[1], args[2]); !v) return fail(v.error().str());
        auto r = system_request({{"cmd", "config_set"}, {"key", args[1]}, {"value", args[2]}});
        if (!r) return fail(r.error().str());
        std::printf("%s = %s (takes effect %s)\n", args[1].c_str(),
                    (*r)["value"].get<std::string>().c_str(),
                    (*r)["applies"].get<std::string>().c_str());
        return 0;
    }
    if (cmd == "validate") {
        if (args.size() > 2) return fail("config validate takes at most one FILE", 2);
        if (args.size() == 2) {
            std::string text;
            if (!read_file(args[1].c_str(), text)) return fail(sys_error("read " + args[1]).str());
            auto doc = config::parse(text, args[1]);
            if (!doc) return fail(doc.error().str());
            std::printf("%s: valid\n", args[1].c_str());
            return 0;
        }
        auto r = system_request({{"cmd", "config_validate"}});
        if (!r) return fail(r.error().str());
        std::printf("%s\n", (*r).value("note", std::string("valid")).c_str());
        return 0;
    }
    if (cmd == "export") {
        if (int e = need(0, "no arguments")) return e;
        auto r = system_request({{"cmd", "config_export"}});
        if (!r) return fail(r.error().str());
        if (r->contains("warning"))
            std::fprintf(stderr, "keel: %s\n", (*r)["warning"].get<std::string>().c_str());
        std::fputs((*r)["yaml"].get<std::string>().c_str(), stdout);
        return 0;
    }
    return fail(fmt::format("unknown config command '{}'\n{}", cmd, kConfigUsage), 2);
}

} // namespace keel::cli
