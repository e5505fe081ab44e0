// `keel audit [--json] [-v]`: the host and the system services from the system runtime, the
// workloads from the user runtime, on one screen. Exit status: 0 without warnings, 1 with.
#include <cstdio>

#include "audit/audit.h"
#include "cli/commands.h"
#include "cli/options.h"

namespace keel::cli {

using nlohmann::json;

static audit::Check from_json(const json& j) {
    audit::Check c;
    c.id = j.value("id", "");
    c.section = j.value("section", "");
    c.target = j.value("target", "");
    std::string level = j.value("level", "INFO");
    c.level = level == "PASS"   ? audit::Level::pass
              : level == "WARN" ? audit::Level::warn
                                : audit::Level::info;
    c.title = j.value("title", "");
    c.detail = j.value("detail", "");
    c.fix = j.value("fix", "");
    return c;
}

int audit_main(const std::vector<std::string>& args) {
    auto a = Options::parse({"audit", {{"json"}, {"verbose", "v"}, {"help", "h"}}}, args);
    if (!a) {
        std::fprintf(stderr, "keel: audit: %s\n", a.error().str().c_str());
        return 2;
    }
    if (!a->positional().empty()) {
        std::fprintf(stderr, "keel: audit: unexpected argument %s\n", a->positional()[0].c_str());
        return 2;
    }
    bool as_json = a->flag("json"), verbose = a->flag("verbose");
    if (a->flag("help")) {
        std::puts(
            "usage: keel audit [--json] [-v]\n\n"
            "  Checks the host, every system service and every workload; [PASS], [WARN] (with\n"
            "  what to change) and [INFO] lines, then Checks: N  Score: M (+1 pass, -1 warn).\n"
            "  -v       every check on its own line (passes are folded by group otherwise)\n"
            "  --json   the same as JSON\n"
            "  Exit status: 0 without warnings, 1 with, 2 when the system runtime cannot be "
            "asked.");
        return 0;
    }
    auto sys = system_request({{"cmd", "audit"}});
    if (!sys) {
        std::fprintf(stderr, "keel: audit: %s\n", sys.error().str().c_str());
        return 2;
    }
    std::vector<audit::Check> checks;
    for (const auto& j : (*sys)["checks"])
        checks.push_back(from_json(j));
    auto user = user_request({{"cmd", "audit"}});
    if (user) {
        for (const auto& j : (*user)["checks"])
            checks.push_back(from_json(j));
        if ((*user)["checks"].empty())
            checks.push_back({"5", "workloads", "", audit::Level::pass, "no workloads", "", ""});
    } else {
        checks.push_back({"5", "workloads", "", audit::Level::info, "workloads not checked",
                          "the user runtime does not answer: " + user.error().str(), ""});
    }
    audit::Summary s = audit::summarize(checks);
    if (as_json) {
        json out = json::array();
        for (const auto& c : checks)
            out.push_back(audit::to_json(c));
        json j = {{"checks", out},
                  {"summary",
                   {{"checks", s.checks},
                    {"score", s.score()},
                    {"pass", s.pass},
                    {"warn", s.warn},
                    {"info", s.info}}}};
        std::puts(j.dump(2).c_str());
    } else {
        std::fputs(audit::render(checks, verbose).c_str(), stdout);
    }
    return s.warn ? 1 : 0;
}

} // namespace keel::cli
