// keel audit's checks, from facts given here: what passes, what warns and says how to fix
// it, what is only information, and how the screen folds passes.
#include <algorithm>
#include <fstream>
#include <set>
#include <sstream>
#include <string>

#include <catch2/catch.hpp>

#include "audit/audit.h"
#include "config/kernel_cmdline.h"
#include "runtime/capabilities.h"

using namespace keel::audit;

namespace {

keel::config::KernelCmdline shipped_cmdline() {
    std::ifstream in(std::string(KEEL_SOURCE_DIR) + "/config/cmdline.yml");
    std::stringstream text;
    text << in.rdbuf();
    auto k = keel::config::parse_kernel_cmdline(text.str(), "config/cmdline.yml");
    REQUIRE(k.ok());
    return *k;
}

const char* kMountinfo =
    "22 1 0:20 / / rw,relatime - rootfs rootfs rw\n"
    "25 22 0:23 / /tmp rw,nosuid,nodev,noexec,relatime - tmpfs tmp rw,mode=1777\n"
    "26 22 0:24 / /run rw,nosuid,nodev,noexec,relatime - tmpfs run rw,mode=755\n"
    "27 22 0:5 / /dev rw,nosuid,noexec,relatime - devtmpfs devtmpfs rw\n"
    "28 27 0:25 / /dev/shm rw,nosuid,nodev,noexec,relatime - tmpfs shm rw\n"
    "40 22 254:0 / /var/lib/keel rw,nosuid,nodev,noexec,relatime - ext4 /dev/vda rw\n";

HostFacts good_host() {
    HostFacts f;
    f.sysctl_profile = {{"kernel.kptr_restrict", "2"},
                        {"kernel.sysrq", "0"},
                        {"kernel.unprivileged_userns_clone", "1"}};
    f.sysctl_actual = {{"kernel.kptr_restrict", "2\n"},
                       {"kernel.sysrq", "0\n"},
                       {"kernel.unprivileged_userns_clone", "1\n"},
                       {"kernel.modules_disabled", "1\n"},
                       {"kernel.kexec_load_disabled", "1\n"}};
    auto policy = shipped_cmdline();
    std::string cmdline = "console=ttyS0";
    for (const auto& [word, why] : policy.hardening) {
        cmdline += " " + word;
        f.hardening_params.push_back(word);
    }
    f.weakening_params = policy.weakening;
    f.cmdline = cmdline + "\n";
    f.loaded_modules = {"virtio_net", "net_failover", "failover"};
    f.allowed_modules = {"virtio_net", "net_failover", "failover", "virtio_blk"};
    f.lockdown = "none [integrity] confidentiality\n";
    f.mountinfo = kMountinfo;
    f.listeners = {{"udp", "0.0.0.0", 42854, "service ntp", true}};
    f.accounts = {
        {"/etc/shadow", "root", "*"}, {"/etc/shadow", "keel", "!"}, {"/etc/passwd", "root", "x"}};
    SocketFile s;
    s.path = "/run/keel/system.sock";
    s.exists = true;
    s.gid = s.want_gid = 1000;
    s.mode = 0660;
    s.want_mode = 0660;
    s.expect = "root:keel 0660";
    f.sockets = {s};
    return f;
}

std::vector<const Check*> with(const std::vector<Check>& checks, Level level) {
    std::vector<const Check*> out;
    for (const auto& c : checks)
        if (c.level == level) out.push_back(&c);
    return out;
}

const Check& by_id(const std::vector<Check>& checks, const std::string& id) {
    auto it =
        std::find_if(checks.begin(), checks.end(), [&](const Check& c) { return c.id == id; });
    REQUIRE(it != checks.end());
    return *it;
}

ContainerFacts default_workload() {
    ContainerFacts c;
    c.name = "web";
    c.workload = true;
    c.running = true;
    c.file = "keel run";
    c.capabilities = keel::runtime::caps::docker_default_names();
    c.own_user_namespace = true;
    c.shared_namespaces = {"net"};
    c.read_only_root = false;
    c.memory_max = 64 << 20;
    c.pids_max = 64;
    c.restart = "no";
    return c;
}

} // namespace

TEST_CASE("audit: a hardened host passes every check", "[audit]") {
    auto checks = host_checks(good_host());
    CHECK(with(checks, Level::warn).empty());
    CHECK(with(checks, Level::info).empty());
    // 3 sysctls, the command-line parameters, and one check each for the rest.
    CHECK(checks.size() == 3 + shipped_cmdline().hardening.size() + 15);
    CHECK(by_id(checks, "1.6").detail == "3 loaded");
    CHECK(by_id(checks, "1.12").detail == "udp 0.0.0.0:42854 (service ntp)");
}

TEST_CASE("audit: host findings name what is wrong and what to change", "[audit]") {
    auto f = good_host();
    f.sysctl_actual["kernel.sysrq"] = "1\n";
    f.sysctl_actual["kernel.unprivileged_userns_clone"] = std::nullopt; // not a Debian kernel
    f.cmdline = "console=ttyS0 lockdown=integrity nokaslr mitigations=off pti=off";
    f.sysctl_actual["kernel.modules_disabled"] = "0";
    f.loaded_modules.push_back("floppy");
    f.lockdown = "[none] integrity confidentiality";
    f.mountinfo =
        std::string(kMountinfo) + "50 22 0:30 / /tmp rw,nosuid,relatime - tmpfs tmp2 rw\n";
    f.listeners.push_back({"tcp", "0.0.0.0", 8080, "pid 77 (nc)", false});
    f.accounts.push_back({"/etc/shadow", "admin", "$6$salt$hash"});
    f.accounts.push_back({"/usr/share/keel/images/x/etc/passwd", "guest", ""});
    f.sockets[0].mode = 0666;
    f.allow_privileged = true;
    auto checks = host_checks(f);

    CHECK(by_id(checks, "1.1.2").level == Level::warn);
    CHECK(by_id(checks, "1.1.2").detail == "is 1");
    CHECK(by_id(checks, "1.1.2").fix.find("/etc/keel/sysctl.yml") != std::string::npos);
    CHECK(by_id(checks, "1.1.3").level == Level::info);  // no such key: nothing to fix here
    CHECK(by_id(checks, "1.2.1").level == Level::pass);  // lockdown=integrity is there
    CHECK(by_id(checks, "1.2.10").level == Level::warn); // pti=on is not
    CHECK(by_id(checks, "1.3").detail == "found: nokaslr mitigations=off pti=off");
    CHECK(by_id(checks, "1.4").level == Level::warn);
    CHECK(by_id(checks, "1.6").detail == "not on it: floppy");
    CHECK(by_id(checks, "1.7").level == Level::warn);
    CHECK(by_id(checks, "1.9").detail == "tmpfs; without nodev,noexec"); // the mount on top counts
    CHECK(by_id(checks, "1.12").detail == "also: tcp 0.0.0.0:8080 (pid 77 (nc))");
    CHECK(by_id(checks, "1.14").detail ==
          "admin in /etc/shadow, guest (empty password) in /usr/share/keel/images/x/etc/passwd");
    CHECK(by_id(checks, "1.15.1").detail == "is 0:1000 0666");
    CHECK(by_id(checks, "1.16").fix == "keel config set allow_privileged false");
    for (const auto* c : with(checks, Level::warn))
        CHECK_FALSE(c->fix.empty());
}

TEST_CASE("audit: the command line's hardening comes from cmdline.yml, and a missing policy warns",
          "[audit]") {
    auto policy = shipped_cmdline();
    std::set<std::string> words;
    for (const auto& [w, why] : policy.hardening)
        words.insert(w);
    for (const char* w :
         {"mitigations=auto,nosmt", "hardened_usercopy=1", "lockdown=integrity", "pti=on"})
        CHECK(words.count(w));
    auto f = good_host();
    f.cmdline = "console=ttyS0 lockdown=integrity";
    auto checks = host_checks(f);
    auto warned = [&](const std::string& word) {
        return std::any_of(checks.begin(), checks.end(), [&](const Check& c) {
            return c.level == Level::warn && c.title == "kernel command line has " + word;
        });
    };
    CHECK(warned("mitigations=auto,nosmt"));
    CHECK(warned("hardened_usercopy=1"));
    CHECK_FALSE(warned("lockdown=integrity"));
    f.cmdline += " mitigations=auto";
    CHECK(by_id(host_checks(f), "1.3").detail == "found: mitigations=auto");

    f.cmdline_policy_error = "/etc/keel/cmdline.yml:1: bad";
    f.hardening_params.clear();
    CHECK(by_id(host_checks(f), "1.2.0").level == Level::warn);
}

TEST_CASE("audit: sshd settings, first value wins, Match blocks are not global", "[audit]") {
    auto f = good_host();
    f.sshd_enabled = true;
    f.sshd_config =
        "# comment\nPasswordAuthentication no\nKbdInteractiveAuthentication no\npermitrootlogin "
        "NO\n"
        "PermitRootLogin yes\nPermitEmptyPasswords no\nMaxAuthTries 6\nX11Forwarding no\n"
        "AllowUsers keel\nMatch User keel\n  AllowTcpForwarding no\n";
    auto checks = host_checks(f);
    std::set<std::string> warned;
    for (const auto* c : with(checks, Level::warn))
        warned.insert(c->title);
    CHECK(warned == std::set<std::string>{"sshd: MaxAuthTries 3", "sshd: AllowTcpForwarding no"});
    CHECK(by_id(checks, "1.13.5").detail == "is 6");
    CHECK(by_id(checks, "1.13.7").detail == "not set (OpenSSH's default applies)");
}

TEST_CASE("audit: a default workload passes; --cap-add and no limits warn about exactly that",
          "[audit]") {
    auto checks = container_checks(default_workload());
    CHECK(with(checks, Level::warn).empty());
    CHECK(checks.size() == 15);
    CHECK(by_id(checks, "5.3").level == Level::info); // the host network: no bridge yet

    auto c = default_workload();
    c.capabilities.push_back("CAP_SYS_ADMIN");
    c.memory_max.reset();
    c.pids_max.reset();
    checks = container_checks(c);
    std::set<std::string> warned;
    for (const auto* w : with(checks, Level::warn))
        warned.insert(w->id);
    CHECK(warned == std::set<std::string>{"5.2", "5.11", "5.12"});
    CHECK(by_id(checks, "5.2").fix == "run it without --cap-add SYS_ADMIN");
    CHECK(by_id(checks, "5.11").fix == "keel run --memory SIZE");
    CHECK(by_id(checks, "5.2").section == "workloads");
    CHECK(by_id(checks, "5.2").target == "web");

    c = default_workload();
    c.mounts = {{"/run/keel/user", "/sock", true, true}, {"/etc", "/host-etc", false, true}};
    checks = container_checks(c);
    CHECK(by_id(checks, "5.13").detail == "/etc:/host-etc");
    CHECK(by_id(checks, "5.14").level == Level::warn);
}

TEST_CASE(
    "audit: system services: capabilities in the host's user namespace, by design or dangerous",
    "[audit]") {
    ContainerFacts s;
    s.name = "network";
    s.file = "/etc/keel/services/network.yml";
    s.capabilities = {"CAP_NET_ADMIN", "CAP_NET_RAW"};
    s.shared_namespaces = {"net"};
    s.memory_max = 16 << 20;
    s.pids_max = 16;
    s.restart = "always";
    s.restart_limit = 5;
    auto checks = container_checks(s);
    CHECK(with(checks, Level::warn).empty());
    CHECK(by_id(checks, "5.2").level == Level::info);
    CHECK(by_id(checks, "5.2").section == "system");

    s.capabilities.push_back("CAP_SYS_ADMIN");
    checks = container_checks(s);
    CHECK(by_id(checks, "5.2").level == Level::warn);
    CHECK(by_id(checks, "5.2").fix.find("/etc/keel/services/network.yml") != std::string::npos);
    s.own_user_namespace = true; // the user runtime: SYS_ADMIN over its own namespaces only
    CHECK(by_id(container_checks(s), "5.2").level == Level::pass);

    s.read_only_root = false;
    s.shared_namespaces.insert("pid");
    s.restart_limit = 0;
    checks = container_checks(s);
    CHECK(by_id(checks, "5.10").fix == "read_only_root: true in /etc/keel/services/network.yml");
    CHECK(by_id(checks, "5.4").level == Level::warn);
    CHECK(by_id(checks, "5.15").level == Level::warn);
}

TEST_CASE("audit: the screen folds passes by group and keeps every finding", "[audit]") {
    auto f = good_host();
    f.sysctl_actual["kernel.sysrq"] = "1";
    auto checks = host_checks(f);
    auto c = default_workload();
    c.pids_max.reset();
    auto w = container_checks(c);
    checks.insert(checks.end(), w.begin(), w.end());
    std::string screen = render(checks, false);
    CHECK(screen.find(
              "Host configuration\n[PASS] 1.1 sysctl hardening profile as configured: 2 of 3\n"
              "[WARN] 1.1.2 kernel.sysrq = 0 — is 1\n       fix: ") == 0);
    CHECK(screen.find("[PASS] 1.2 kernel command line hardening: 12 of 12\n") != std::string::npos);
    CHECK(screen.find(
              "Workloads\n[PASS] 5 web: 12 of 15 checks\n[INFO] 5.3 web: own net namespace") !=
          std::string::npos);
    CHECK(screen.find("[WARN] 5.12 web: pids limit — none\n       fix: keel run --pids N\n") !=
          std::string::npos);
    Summary s = summarize(checks);
    CHECK(s.warn == 2);
    CHECK(s.score() == s.pass - 2);
    CHECK(screen.substr(screen.rfind("Checks:")) ==
          "Checks: " + std::to_string(s.checks) + "  Score: " + std::to_string(s.score()) + "  (" +
              std::to_string(s.pass) + " pass, 2 warn, 2 info)\n");
    // -v: one line per check.
    std::string all = render(checks, true);
    CHECK(std::count(all.begin(), all.end(), '\n') ==
          long(checks.size()) + 2 /* sections */ + 2 /* fixes */ + 1);
}

TEST_CASE("audit: the user runtime's share of the state partition", "[audit]") {
    auto f = good_host();
    f.user_state_detail = "/var/lib/keel/user: 3 of 48 MiB, 120 of 14746 inodes";
    CHECK(by_id(host_checks(f), "1.17").level == Level::pass);
    CHECK(by_id(host_checks(f), "1.17").detail == f.user_state_detail);
    f.user_state_bounded = false;
    f.user_state_detail = "no project quota enforced on /dev/vda";
    auto unbounded = by_id(host_checks(f), "1.17");
    CHECK(unbounded.level == Level::warn);
    CHECK(unbounded.fix.find("tune2fs -O quota,project") != std::string::npos);
    f.state_persistent = false; // a tmpfs: nothing persists, nothing to fix on a disk
    CHECK(by_id(host_checks(f), "1.17").level == Level::info);
}
