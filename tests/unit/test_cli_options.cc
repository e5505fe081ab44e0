// The CLI's option parser (init/cli/options.h) with the verbs' own tables, and the tables and
// helpers every component shares (init/common: signals, sizes, backoff; Docker's default
// capabilities next to the capability names).
#include <catch2/catch.hpp>

#include "cli/commands.h"
#include "cli/options.h"
#include "cli/runtime_cmd.h"
#include "common/backoff.h"
#include "common/signals.h"
#include "common/sizes.h"
#include "runtime/capabilities.h"

using namespace keel;
using cli::Options;
using Strings = std::vector<std::string>;

namespace {
Options parsed(const cli::VerbSpec& verb, const Strings& argv) {
    auto o = Options::parse(verb, argv);
    INFO(verb.name << ": " << (o ? std::string() : o.error().str()));
    REQUIRE(o.ok());
    return *o;
}
std::string parse_error(const cli::VerbSpec& verb, const Strings& argv) {
    auto o = Options::parse(verb, argv);
    REQUIRE_FALSE(o.ok());
    return o.error().str();
}
} // namespace

TEST_CASE("options: long, short, inline values, single-dash long form", "[options]") {
    auto verb =
        cli::runc_verb("create", {{"bundle", "b", true}, {"detach", "d"}, {"pid-file", "", true}});
    auto a = parsed(verb, {"-b", "/bundle", "--pid-file=/p", "-d", "c1"});
    CHECK(a.value("bundle") == "/bundle");
    CHECK(a.value("pid-file") == "/p");
    CHECK(a.flag("detach"));
    CHECK(a.positional() == Strings{"c1"});
    CHECK(parsed(verb, {"-bundle", "/b", "c2"}).value("bundle") == "/b");
    CHECK(parsed(verb, {"c3", "-pid-file=/q"}).value("pid-file") == "/q");

    CHECK(parse_error(verb, {"--bundel", "/b"}) ==
          "unknown option --bundel (did you mean --bundle?)");
    CHECK(parse_error(verb, {"--bundle"}) == "option --bundle needs a value");
    CHECK(parse_error(verb, {"--detach=yes"}) == "option --detach takes no value");
    CHECK(parsed(verb, {"--", "-d"}).positional() == Strings{"-d"});
}

TEST_CASE("options: short clusters, repeatable values, aliases", "[options]") {
    cli::VerbSpec verb{"t",
                       {{"tty", "t"},
                        {"interactive", "i"},
                        {"env", "e", true, true},
                        {"net", "", true, false, {"network"}}}};
    auto a = parsed(verb,
                    {"-it", "-e", "A=1", "--env=B=2", "-eC=3", "-e=D=4", "--network", "none", "x"});
    CHECK(a.flag("tty"));
    CHECK(a.flag("interactive"));
    CHECK(a.values("env") == Strings{"A=1", "B=2", "C=3", "D=4"});
    CHECK(a.value("net") == "none");
    CHECK(a.positional() == Strings{"x"});
    CHECK(parse_error(verb, {"-iz"}) == "unknown option -z");
    CHECK(parse_error(verb, {"-ie"}) == "option -e needs a value");
    // A non-repeatable option given twice keeps the last, as getopt does.
    CHECK(parsed(verb, {"--net", "a", "--net", "b"}).value("net") == "b");
}

TEST_CASE("options: keel run's own options end at the image; the rest is the command",
          "[options]") {
    auto a = parsed(cli::run_options(), {"--rm", "busybox", "ls", "-l"});
    CHECK(a.flag("rm"));
    CHECK(a.positional() == Strings{"busybox", "ls", "-l"});
    CHECK_FALSE(a.flag("help"));

    a = parsed(cli::run_options(),
               {"-d", "--name", "web", "-e", "GREETING=hello", "busybox", "sh", "-c", "echo -e x"});
    CHECK(a.flag("detach"));
    CHECK(a.value("name") == "web");
    CHECK(a.values("env") == Strings{"GREETING=hello"});
    CHECK(a.positional() == Strings{"busybox", "sh", "-c", "echo -e x"});

    // "--" before the image: the old hand-written loop took it for an option that needs a value.
    a = parsed(cli::run_options(), {"--rm", "--", "busybox", "--help"});
    CHECK(a.positional() == Strings{"busybox", "--help"});
    CHECK_FALSE(a.flag("help"));

    a = parsed(cli::run_options(), {"-it", "--memory=64M", "--pids-limit", "10", "busybox"});
    CHECK(a.flag("tty"));
    CHECK(a.flag("interactive"));
    CHECK(a.value("memory") == "64M");
    CHECK(a.value("pids") == "10");
    CHECK(parse_error(cli::run_options(), {"--nmae", "x", "busybox"}) ==
          "unknown option --nmae (did you mean --name?)");
}

TEST_CASE("options: keel exec NAME COMMAND keeps the command's options", "[options]") {
    auto a = parsed(cli::exec_options(), {"web", "sh", "-c", "x"});
    CHECK(a.positional() == Strings{"web", "sh", "-c", "x"});
    a = parsed(cli::exec_options(), {"-i", "-e", "A=1", "--", "box", "ps", "-o", "pid,comm"});
    CHECK(a.flag("interactive"));
    CHECK(a.values("env") == Strings{"A=1"});
    CHECK(a.positional() == Strings{"box", "ps", "-o", "pid,comm"});
}

TEST_CASE("options: ps, stop, kill, rm, logs each have their own table", "[options]") {
    // --signal=KILL: the old scan matched only "-s KILL" and sent TERM.
    CHECK(parsed(cli::workload_options("kill"), {"--signal=KILL", "web"}).value("signal") ==
          "KILL");
    auto k = parsed(cli::workload_options("kill"), {"web", "-s", "HUP", "db"});
    CHECK(k.value("signal") == "HUP");
    CHECK(k.positional() == Strings{"web", "db"});
    CHECK(parsed(cli::workload_options("stop"), {"--time=3", "web"}).value("time") == "3");
    CHECK(parsed(cli::workload_options("rm"), {"web", "-f"}).flag("force"));
    CHECK(parsed(cli::workload_options("logs"), {"-f", "-n", "5", "web"}).positional() ==
          Strings{"web"});
    CHECK(parsed(cli::workload_options("ps"), {"-a"}).flag("all"));
    // The old scan ignored what it did not know.
    CHECK(parse_error(cli::workload_options("ps"), {"--bogus"}) == "unknown option --bogus");
    CHECK(parse_error(cli::workload_options("rm"), {"-s", "KILL", "web"}) == "unknown option -s");
}

TEST_CASE("signals: one rule set, names both ways", "[signals]") {
    for (const char* s : {"TERM", "SIGTERM", "term", "SigTerm", "15"})
        CHECK(signal_number(s) == 15);
    CHECK(signal_number("KILL") == 9);
    for (const char* s : {"", "0", "99", "1000", "BOGUS", "SIG", "-9", "15x"})
        CHECK(signal_number(s) == -1);
    CHECK(signal_name(15) == "TERM");
    CHECK(signal_name(9) == "KILL");
    CHECK(signal_number(signal_name(2)) == 2);
}

TEST_CASE("sizes: 512M, 1G, 100k and plain bytes", "[sizes]") {
    CHECK(*parse_size("512M") == 512ll << 20);
    CHECK(*parse_size("1G") == 1ll << 30);
    CHECK(*parse_size("100k") == 100ll << 10);
    CHECK(*parse_size("4096") == 4096);
    CHECK(*parse_size("7b") == 7);
    CHECK(*parse_size("7B") == 7);
    CHECK(parse_size("").error().str() == "expected a size like 64M");
    CHECK(parse_size("M").error().str() == "expected a size like 64M");
    CHECK(*parse_size("1234567890123456") == 1234567890123456ll);
    CHECK(parse_size("99999999999999999999").error().str() ==
          "'99999999999999999999' is too large");
    CHECK(parse_size("9999999999999G").error().str() == "'9999999999999G' is too large");
    CHECK(parse_size("64X").error().str() == "unknown size unit 'X' (use K, M or G)");
    CHECK(format_size(64ll << 20) == "64M");
    CHECK(format_size(1ll << 30) == "1G");
    CHECK(format_size(1536ll << 10) == "1536K");
    CHECK(format_size(1000) == "1000");
    for (int64_t n : {int64_t(4096), int64_t(3) << 30, int64_t(12345)})
        CHECK(*parse_size(format_size(n)) == n);
}

TEST_CASE("backoff: doubles from the minimum to the cap", "[backoff]") {
    CHECK(backoff_delay(1, 100, 30000) == 100);
    CHECK(backoff_delay(4, 100, 30000) == 800);
    CHECK(backoff_delay(0, 100, 30000) == 100);
    CHECK(backoff_delay(1000, 100, 30000) == 30000);
    CHECK(backoff_delay(3, 100, 250) == 250);
}

TEST_CASE("capabilities: Docker's default set by number and by name agree", "[caps]") {
    const auto& names = runtime::caps::docker_default_names();
    REQUIRE(names.size() == runtime::caps::docker_default().size());
    CHECK(names.size() == 14);
    CHECK(names.front() == "CAP_CHOWN");
    CHECK(names.back() == "CAP_AUDIT_WRITE");
}
