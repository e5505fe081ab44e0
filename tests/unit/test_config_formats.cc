// The configuration formats PID 1 reads at boot and keel audit reads again: the kernel command
// line, the module allow-list and modules.dep (with the load order they give), and the sysctl
// hardening profile. Pure parsing, no root needed.
#include <algorithm>
#include <map>
#include <set>
#include <string>
#include <vector>

#include <catch2/catch.hpp>

#include "common/fd.h"
#include "config/kernel_args.h"
#include "config/modules_list.h"
#include "config/sysctl_profile.h"

using namespace keel::config;

namespace {

std::string slurp(const std::string& path) {
    std::string s;
    REQUIRE(keel::read_file(path.c_str(), s));
    return s;
}

} // namespace

// =============================================================================================
// Kernel command line

TEST_CASE("config: kernel args: keel.* keys") {
    auto k =
        parse_kernel_args("BOOT_IMAGE=/boot/vmlinuz root=/dev/vda2 ro quiet console=ttyS0,115200 "
                          "keel.state=MYSTATE keel.debug keel.recovery=0 keel.autologin=yes "
                          "keel.config.hostname=box keel.config.motd=\"hello keel world\" "
                          "keel.frobnicate=1 keel.nothing TERM=linux single -- init_arg\n");
    REQUIRE(k.state_label);
    CHECK(*k.state_label == "MYSTATE");
    CHECK(k.debug);
    CHECK_FALSE(k.recovery);
    CHECK(k.autologin);
    CHECK(k.config ==
          std::map<std::string, std::string>{{"hostname", "box"}, {"motd", "hello keel world"}});
    CHECK(k.unknown_keel == std::vector<std::string>{"keel.frobnicate=1", "keel.nothing"});
}

TEST_CASE("config: kernel args: defaults, and nothing else is fatal") {
    auto empty = parse_kernel_args("");
    CHECK_FALSE(empty.state_label);
    CHECK_FALSE(empty.debug);
    CHECK_FALSE(empty.recovery);
    CHECK_FALSE(empty.autologin);
    CHECK(empty.config.empty());
    CHECK(empty.unknown_keel.empty());

    auto k = parse_kernel_args("root=LABEL=keel quiet HOME=/ TERM=linux keelx=1 notkeel.debug "
                               "x.keel.recovery keel \"unterminated quote keel.debug");
    CHECK_FALSE(k.state_label);
    CHECK_FALSE(k.debug); // inside the unterminated quote: one word that is not a keel.* key
    CHECK_FALSE(k.recovery);
    CHECK(k.config.empty());
    CHECK(k.unknown_keel.empty());
}

TEST_CASE("config: kernel args: boolean values and odd keel.* words") {
    CHECK(parse_kernel_args("keel.recovery").recovery);
    CHECK(parse_kernel_args("keel.recovery=1").recovery);
    CHECK(parse_kernel_args("keel.recovery=true").recovery);
    CHECK(parse_kernel_args("keel.recovery=on").recovery);
    CHECK_FALSE(parse_kernel_args("keel.recovery=no").recovery);
    CHECK_FALSE(parse_kernel_args("keel.debug keel.debug=0").debug); // the last word wins
    CHECK_FALSE(parse_kernel_args("keel.state=").state_label);       // an empty label is no label

    auto k = parse_kernel_args(
        "keel.config.a=1=2 keel.config.empty= keel.config.novalue keel.config.=x");
    CHECK(k.config == std::map<std::string, std::string>{{"a", "1=2"}, {"empty", ""}});
    CHECK(k.unknown_keel == std::vector<std::string>{"keel.config.novalue", "keel.config.=x"});
}

TEST_CASE("config: kernel args: splitting groups double quotes like the kernel") {
    CHECK(split_kernel_args("a  b\tc\n") == std::vector<std::string>{"a", "b", "c"});
    CHECK(split_kernel_args("x=\"a b\" \"keel.config.k=v w\" y") ==
          std::vector<std::string>{"x=a b", "keel.config.k=v w", "y"});
    CHECK(split_kernel_args("a \"\" b") == std::vector<std::string>{"a", "", "b"});
    CHECK(split_kernel_args("   ").empty());
}

// =============================================================================================
// Kernel modules

namespace {

// Shaped like Debian's modules.dep: each line lists the module's whole dependency closure,
// in the order modprobe unloads them.
const char* kModulesDep =
    "kernel/fs/ext4/ext4.ko.xz: kernel/lib/crc16.ko.xz kernel/fs/mbcache.ko.xz "
    "kernel/fs/jbd2/jbd2.ko.xz\n"
    "kernel/fs/mbcache.ko.xz:\n"
    "kernel/fs/jbd2/jbd2.ko.xz:\n"
    "kernel/lib/crc16.ko.xz:\n"
    "kernel/net/bridge/bridge.ko.xz: kernel/net/802/stp.ko.xz kernel/net/llc/llc.ko.xz\n"
    "kernel/net/802/stp.ko.xz: kernel/net/llc/llc.ko.xz\n"
    "kernel/net/llc/llc.ko.xz:\n"
    "kernel/drivers/net/virtio_net.ko.xz: kernel/drivers/net/net_failover.ko.xz "
    "kernel/net/core/failover.ko.xz\n"
    "kernel/drivers/net/net_failover.ko.xz: kernel/net/core/failover.ko.xz\n"
    "kernel/net/core/failover.ko.xz:\n"
    "kernel/drivers/block/virtio-blk.ko.zst:\n"
    "\n"
    "kernel/drivers/char/broken.ko: kernel/drivers/char/gone.ko\n";

size_t index_of(const std::vector<std::string>& v, const std::string& s) {
    auto it = std::find(v.begin(), v.end(), s);
    REQUIRE(it != v.end());
    return static_cast<size_t>(it - v.begin());
}

} // namespace

TEST_CASE("config: modules: names from paths") {
    CHECK(modules::module_name("kernel/drivers/net/virtio-net.ko.xz") == "virtio_net");
    CHECK(modules::module_name("kernel/fs/ext4/ext4.ko") == "ext4");
    CHECK(modules::module_name("crc32c-generic.ko.zst") == "crc32c_generic");
}

TEST_CASE("config: modules: modules.dep is parsed") {
    auto t = modules::parse_modules_dep(kModulesDep);
    CHECK(t.path.size() == 12);
    CHECK(t.path.at("ext4") == "kernel/fs/ext4/ext4.ko.xz");
    CHECK(t.path.at("virtio_blk") == "kernel/drivers/block/virtio-blk.ko.zst");
    CHECK(t.deps.at("ext4") == std::vector<std::string>{"crc16", "mbcache", "jbd2"});
    CHECK(t.deps.at("llc").empty());
}

TEST_CASE("config: modules: load order puts dependencies first, each once") {
    auto t = modules::parse_modules_dep(kModulesDep);
    std::vector<std::string> missing;
    auto order = modules::load_order(
        t, {"ext4", "bridge", "virtio-net", "jbd2", "llc", "virtio-blk", "ext4"}, {"unix", "loop"},
        missing);
    CHECK(missing.empty());
    CHECK(std::set<std::string>(order.begin(), order.end()).size() == order.size()); // each once
    CHECK(std::set<std::string>(order.begin(), order.end()) ==
          std::set<std::string>{"ext4", "crc16", "mbcache", "jbd2", "bridge", "stp", "llc",
                                "virtio_net", "net_failover", "failover", "virtio_blk"});
    for (const auto& [name, deps] : t.deps) {
        if (std::find(order.begin(), order.end(), name) == order.end()) continue;
        for (const auto& d : deps) {
            INFO(d << " before " << name);
            CHECK(index_of(order, d) < index_of(order, name));
        }
    }
    // The full order: modules.dep lists a closure in unload order, so it loads from the right.
    CHECK(order == std::vector<std::string>{"jbd2", "mbcache", "crc16", "ext4", "llc", "stp",
                                            "bridge", "failover", "net_failover", "virtio_net",
                                            "virtio_blk"});
}

TEST_CASE("config: modules: builtin modules are not missing, absent ones are reported") {
    auto t = modules::parse_modules_dep(kModulesDep);
    std::vector<std::string> missing;
    auto order =
        modules::load_order(t, {"unix", "no-such-module", "ext4", "broken", "no_such_module"},
                            {"unix", "af_packet"}, missing);
    CHECK(missing == std::vector<std::string>{"no_such_module", "gone"});
    CHECK(std::find(order.begin(), order.end(), "unix") == order.end());
    CHECK(std::find(order.begin(), order.end(), "ext4") != order.end());
    // A missing dependency is reported; its dependant is still tried (and its failure named).
    CHECK(std::find(order.begin(), order.end(), "broken") != order.end());
}

TEST_CASE("config: modules: a dependency cycle neither hangs nor loads a module twice") {
    std::vector<std::string> missing;
    auto two = modules::parse_modules_dep("a.ko: b.ko\nb.ko: a.ko\n");
    auto order = modules::load_order(two, {"a", "b"}, {}, missing);
    CHECK(std::set<std::string>(order.begin(), order.end()) == std::set<std::string>{"a", "b"});
    CHECK(order.size() == 2);

    auto dense = modules::parse_modules_dep("a.ko: b.ko c.ko d.ko\nb.ko: a.ko c.ko d.ko\n"
                                            "c.ko: a.ko b.ko d.ko\nd.ko: a.ko b.ko c.ko\n");
    order = modules::load_order(dense, {"a", "d"}, {}, missing);
    CHECK(order.size() == 4);
    CHECK(missing.empty());

    auto self = modules::parse_modules_dep("s.ko: s.ko\n");
    CHECK(modules::load_order(self, {"s"}, {}, missing) == std::vector<std::string>{"s"});
}

TEST_CASE("config: modules: the allow-list") {
    auto l = modules::parse_allow_list("modules:\n"
                                       "  - virtio-pci\n"
                                       "  - {name: virtio_rng, params: \"\"}\n"
                                       "  - name: loop\n"
                                       "    params: max_loop=64 max_part=4\n"
                                       "lock: false\n",
                                       "modules.yml");
    REQUIRE(l.ok());
    REQUIRE(l->modules.size() == 3);
    CHECK(l->modules[0].name == "virtio_pci");
    CHECK(l->modules[1].name == "virtio_rng");
    CHECK(l->modules[1].params.empty());
    CHECK(l->modules[2].params == "max_loop=64 max_part=4");
    CHECK_FALSE(l->lock);

    auto empty = modules::parse_allow_list("", "modules.yml");
    REQUIRE(empty.ok());
    CHECK(empty->modules.empty());
    CHECK(empty->lock); // locking is the default
}

TEST_CASE("config: modules: the shipped allow-list parses") {
    std::string text = slurp(std::string(KEEL_SOURCE_DIR) + "/config/modules.yml");
    auto l = modules::parse_allow_list(text, "config/modules.yml");
    REQUIRE(l.ok());
    CHECK(l->lock);
    std::set<std::string> names;
    for (const auto& m : l->modules)
        names.insert(m.name);
    CHECK(names.count("ext4") == 1);
    CHECK(names.count("virtio_blk") == 1);
}

TEST_CASE("config: modules: allow-list errors name the file and line") {
    auto err = [](const std::string& text) {
        auto r = modules::parse_allow_list(text, "/etc/keel/modules.yml");
        REQUIRE_FALSE(r.ok());
        return r.error().str();
    };
    CHECK(err("modules:\n  - ext4\nfrobnicate: 1\n") ==
          "/etc/keel/modules.yml:3: unknown key 'frobnicate'");
    CHECK(err("modules:\n  - ext4\n  - name: loop\n    param: max_loop=8\n") ==
          "/etc/keel/modules.yml:4: modules: unknown key 'param'");
    CHECK(err("# the list\nmodules: ext4\n") ==
          "/etc/keel/modules.yml:2: modules: expected a list");
    CHECK(err("modules:\n  - ext4\n  - {params: x}\n") ==
          "/etc/keel/modules.yml:3: modules: entry without a name");
    CHECK(err("- ext4\n") == "/etc/keel/modules.yml: expected a mapping with 'modules'");
    CHECK(err("modules: []\nlock: maybe\n").rfind("/etc/keel/modules.yml:2: ", 0) == 0);
    std::string syntax = err("modules:\n  - ext4\n  - [loop\n");
    CHECK(syntax.rfind("/etc/keel/modules.yml:", 0) == 0);
    CHECK(syntax != "/etc/keel/modules.yml:");
}

// =============================================================================================
// sysctl hardening profile

TEST_CASE("config: sysctl: key paths") {
    CHECK(sysctl::key_path("kernel.kptr_restrict") == "/proc/sys/kernel/kptr_restrict");
    CHECK(sysctl::key_path("net.ipv4.conf.all.accept_redirects") ==
          "/proc/sys/net/ipv4/conf/all/accept_redirects");
    CHECK(sysctl::key_path("net/ipv4/conf/eth0.100/rp_filter") ==
          "/proc/sys/net/ipv4/conf/eth0.100/rp_filter");
    CHECK(sysctl::key_path("fs.protected_fifos", "/tmp/x") == "/tmp/x/fs/protected_fifos");
}

TEST_CASE("config: sysctl: the profile keeps file order and values as written") {
    auto p = sysctl::parse_profile("sysctl:\n"
                                   "  kernel.kptr_restrict: 2\n"
                                   "  fs.protected_fifos: 2   # a comment\n"
                                   "  net.ipv4.ip_local_port_range: \"32768 60999\"\n"
                                   "  kernel.sysrq: 0\n",
                                   "sysctl.yml");
    REQUIRE(p.ok());
    CHECK(*p == sysctl::Profile{{"kernel.kptr_restrict", "2"},
                                {"fs.protected_fifos", "2"},
                                {"net.ipv4.ip_local_port_range", "32768 60999"},
                                {"kernel.sysrq", "0"}});
    auto empty = sysctl::parse_profile("# nothing\n", "sysctl.yml");
    REQUIRE(empty.ok());
    CHECK(empty->empty());
}

TEST_CASE("config: sysctl: profile errors name the file and line") {
    auto err = [](const std::string& text) {
        auto r = sysctl::parse_profile(text, "/etc/keel/sysctl.yml");
        REQUIRE_FALSE(r.ok());
        return r.error().str();
    };
    CHECK(err("sysctls:\n  kernel.sysrq: 0\n") ==
          "/etc/keel/sysctl.yml:1: expected one key, 'sysctl'");
    CHECK(err("sysctl: 1\n") == "/etc/keel/sysctl.yml:1: sysctl: expected a mapping");
    CHECK(err("sysctl:\n  kernel.sysrq: 0\n  kernel.kptr_restrict:\n    - 2\n") ==
          "/etc/keel/sysctl.yml:4: sysctl.kernel.kptr_restrict: expected a value");
    CHECK(err("sysctl:\n  kernel.sysrq: [0\n").rfind("/etc/keel/sysctl.yml:", 0) == 0);
}

TEST_CASE("config: sysctl: the shipped profile has the hardening the issue asks for") {
    std::string text = slurp(std::string(KEEL_SOURCE_DIR) + "/config/sysctl.yml");
    auto p = sysctl::parse_profile(text, "config/sysctl.yml");
    REQUIRE(p.ok());
    std::map<std::string, std::string> m(p->begin(), p->end());
    const std::map<std::string, std::string> want = {
        {"kernel.kptr_restrict", "2"},       {"kernel.dmesg_restrict", "1"},
        {"kernel.perf_event_paranoid", "3"}, {"kernel.unprivileged_bpf_disabled", "1"},
        {"net.core.bpf_jit_harden", "2"},    {"fs.suid_dumpable", "0"},
        {"kernel.randomize_va_space", "2"},  {"kernel.sysrq", "0"},
        {"dev.tty.ldisc_autoload", "0"},     {"vm.unprivileged_userfaultfd", "0"},
        {"net.ipv4.tcp_syncookies", "1"},    {"net.ipv4.conf.all.accept_redirects", "0"},
    };
    for (const auto& [k, v] : want) {
        INFO(k);
        REQUIRE(m.count(k) == 1);
        CHECK(m[k] == v);
    }
    CHECK(m.count("kernel.yama.ptrace_scope") == 1);
    CHECK(m.count("fs.protected_symlinks") == 1);
}
