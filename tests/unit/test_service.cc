// Service files and the system configuration: parsing, defaults, validation messages (file,
// line, column, key, suggestion), catalogs with bad files, dependency order and cycles.
#include <sys/stat.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <string>

#include <catch2/catch.hpp>

#include "common/fd.h"
#include "config/config.h"
#include "runtime/device_filter.h"
#include "service/service_spec.h"

using namespace keel;
using namespace keel::service;

namespace {

std::string error_of(const std::string& yaml, const std::string& file = "svc.yml") {
    auto r = parse_service(yaml, file);
    REQUIRE_FALSE(r);
    return r.error().str();
}

struct TempDir {
    std::string path;
    TempDir() {
        char t[] = "/tmp/keel-unit-XXXXXX";
        path = ::mkdtemp(t);
    }
    ~TempDir() { std::filesystem::remove_all(path); }
    void write(const std::string& name, const std::string& text) const {
        REQUIRE(write_file_atomic(path + "/" + name, text));
    }
};

} // namespace

TEST_CASE("service file: every key", "[service]") {
    auto r = parse_service(R"(image: web
command: [/bin/httpd, -f]
environment: [A=1, B=two]
user: www
group: www
working_dir: /srv
capabilities: [net_bind_service, CAP_CHOWN]
host: [net, uts]
mounts:
  - {type: bind, source: /run/keel/web, destination: /run, read_only: false}
  - {type: tmpfs, destination: /tmp, options: "size=1m"}
  - /srv/data:/data:rw
devices: [/dev/null]
read_only_root: false
resources: {memory: 64M, memory_high: 48M, pids: 32, cpu: 0.5, cpu_weight: 200}
restart: always
restart_limit: 3
after: [network]
requires: [syslog]
ready: {path: /run/keel/web/ready}
stop_signal: SIGQUIT
stop_timeout: 4
enabled: true
privileged: false
user_namespace: {host_id: 200000, size: 1000}
delegate_cgroup: true
)",
                           "/etc/keel/services/web.yml");
    REQUIRE(r);
    const ServiceSpec& s = *r;
    CHECK(s.name == "web");
    CHECK(s.command == std::vector<std::string>{"/bin/httpd", "-f"});
    CHECK(s.environment == std::vector<std::string>{"A=1", "B=two"});
    CHECK((s.user == "www" && s.group == "www" && s.working_dir == "/srv"));
    CHECK(s.capabilities == std::vector<int>{10, 0}); // CAP_NET_BIND_SERVICE, CAP_CHOWN
    CHECK((s.host.net && s.host.uts && !s.host.pid && !s.host.ipc));
    REQUIRE(s.mounts.size() == 3);
    CHECK((s.mounts[0].type == "bind" && !s.mounts[0].read_only &&
           s.mounts[0].destination == "/run"));
    CHECK(
        (s.mounts[1].type == "tmpfs" && s.mounts[1].read_only && s.mounts[1].options == "size=1m"));
    CHECK((s.mounts[2].source == "/srv/data" && !s.mounts[2].read_only));
    CHECK(s.devices == std::vector<std::string>{"/dev/null"});
    CHECK_FALSE(s.read_only_root);
    CHECK(*s.resources.memory_max == 64 << 20);
    CHECK(*s.resources.memory_high == 48 << 20);
    CHECK(*s.resources.pids_max == 32);
    CHECK(*s.resources.cpu_quota == 50000);
    CHECK(*s.resources.cpu_weight == 200);
    CHECK((s.restart == RestartPolicy::always && s.restart_limit == 3));
    CHECK((s.after == std::vector<std::string>{"network"} &&
           s.required == std::vector<std::string>{"syslog"}));
    CHECK((s.ready == ReadyKind::path && s.ready_path == "/run/keel/web/ready"));
    CHECK((s.stop_signal == SIGQUIT && s.stop_timeout_s == 4 && s.enabled && !s.privileged));
    CHECK((s.user_namespace.enabled && s.user_namespace.host_id == 200000 &&
           s.user_namespace.size == 1000));
    CHECK(s.delegate_cgroup);
}

TEST_CASE("service file: least privilege by default", "[service]") {
    auto r = parse_service("image: x\ncommand: /bin/sleep 10\n", "x.yml");
    REQUIRE(r);
    CHECK(r->command == std::vector<std::string>{"/bin/sleep", "10"});
    CHECK(r->capabilities.empty());
    CHECK((!r->host.net && !r->host.pid && !r->host.ipc && !r->host.uts));
    CHECK(r->read_only_root);
    CHECK_FALSE(r->enabled);
    CHECK_FALSE(r->privileged);
    CHECK_FALSE(r->user_namespace.enabled);
    CHECK(r->restart == RestartPolicy::on_failure);
    CHECK(r->ready == ReadyKind::started);
    auto ro = parse_service("image: x\ncommand: [a]\nmounts: [/a:/b]\n", "x.yml");
    REQUIRE(ro);
    REQUIRE(ro->mounts.size() == 1);
    CHECK(ro->mounts[0].read_only);
}

TEST_CASE("service file: errors name file, line, column and key", "[service]") {
    CHECK(error_of("image: x\ncommand: [a]\ncapabilites: []\n") ==
          "svc.yml:3:1: capabilites: unknown key (did you mean 'capabilities'?)");
    CHECK(error_of("image: x\ncommand: [a]\ncapabilities: [CAP_NET_ADMN]\n") ==
          "svc.yml:3:16: capabilities[0]: unknown capability CAP_NET_ADMN (did you mean "
          "CAP_NET_ADMIN?)");
    CHECK(error_of("image: x\ncommand: [a]\nenabled: maybe\n") ==
          "svc.yml:3:10: enabled: expected true or false");
    CHECK(error_of("image: x\ncommand: [a]\nhost: [net, mnt]\n") ==
          "svc.yml:3:7: host: unknown namespace 'mnt' (net, pid, ipc or uts)");
    CHECK(error_of("image: x\ncommand: [a]\nrestart: sometimes\n") ==
          "svc.yml:3:10: restart: must be no, on-failure or always");
    CHECK(error_of("image: x\ncommand: [a]\nresources: {memory: 12Q}\n").find("resources.memory") !=
          std::string::npos);
    CHECK(error_of("image: x\ncommand: [a]\nmounts: [{type: bind, destination: /x}]\n")
              .find("mounts[0].source: missing") != std::string::npos);
    CHECK(error_of("command: [a]\n").find("image: missing") != std::string::npos);
    CHECK(error_of("image: x\ncommand: [a]\nstop_signal: SIGFOO\n") ==
          "svc.yml:3:14: stop_signal: unknown signal 'SIGFOO'");
    CHECK(error_of("image: x\ncommand: [a]\nuser_namespace: {host_id: 5}\n")
              .find("needs both host_id and size") != std::string::npos);
    // Found by fuzzing: numbers out of range are errors, not exceptions or wrapped values.
    CHECK(error_of("image: x\ncommand: [a]\nresources: {memory: 99999999999999999999M}\n") ==
          "svc.yml:3:21: resources.memory: '99999999999999999999M' is too large");
    CHECK(error_of("image: x\ncommand: [a]\nresources: {memory: 9999999999999G}\n") ==
          "svc.yml:3:21: resources.memory: '9999999999999G' is too large");
    CHECK(error_of("image: x\ncommand: [a]\nstop_signal: 99999999999\n") ==
          "svc.yml:3:14: stop_signal: signal 99999999999 is not between 1 and 64");
    CHECK(error_of("image: x\ncommand: [a]\nstop_signal: 0\n").find("is not between 1 and") !=
          std::string::npos);
    for (const char* cpu : {".nan", "1e300", "-.inf", "0"})
        CHECK(error_of(std::string("image: x\ncommand: [a]\nresources: {cpu: ") + cpu + "}\n") ==
              "svc.yml:3:18: resources.cpu: must be above 0 and at most 1000000");
    CHECK(parse_service(
        "image: x\ncommand: [a]\nresources: {memory: 8G, cpu: 0.5}\nstop_signal: 15\n", "svc.yml"));
    // Broken YAML is a parse error with its position, not an exception.
    CHECK(error_of("image: [x\n").find("svc.yml:") == 0);
}

TEST_CASE("catalog: a bad file disables only that service; dependencies and cycles", "[service]") {
    TempDir d;
    d.write("a.yml", "image: x\ncommand: [a]\nrequires: [b]\n");
    d.write("b.yml", "image: x\ncommand: [b]\nafter: [c]\n");
    d.write("c.yml", "image: x\ncommand: [c]\n");
    d.write("bad.yml", "image: x\ncommand: [a]\nfoo: 1\n");
    d.write("needs-bad.yml", "image: x\ncommand: [a]\nrequires: [bad]\n");
    d.write("needs-ghost.yml", "image: x\ncommand: [a]\nrequires: [ghost]\n");
    d.write("loop1.yml", "image: x\ncommand: [a]\nafter: [loop2]\n");
    d.write("loop2.yml", "image: x\ncommand: [a]\nrequires: [loop1]\n");
    d.write("notes.txt", "not a service\n");
    auto c = load_catalog(d.path);
    std::vector<std::string> ok;
    for (const auto& s : c.services)
        ok.push_back(s.name);
    CHECK(ok == std::vector<std::string>{"a", "b", "c"});
    CHECK(c.errors.at("bad").find("bad.yml:3:1: foo: unknown key") != std::string::npos);
    CHECK(c.errors.at("needs-bad").find("requires bad, which is invalid") != std::string::npos);
    CHECK(c.errors.at("needs-ghost").find("requires unknown service ghost") != std::string::npos);
    CHECK(c.errors.at("loop1").find("loop1 -> loop2 -> loop1") != std::string::npos);
    CHECK(c.errors.count("loop2"));
    // Dependencies first, ties by name.
    CHECK(start_order(c) == std::vector<std::string>{"c", "b", "a"});
}

TEST_CASE("catalog: the state partition adds services, never replaces the image's", "[service]") {
    TempDir sys, user;
    sys.write("net.yml", "image: x\ncommand: [a]\n");
    user.write("net.yml", "image: y\ncommand: [evil]\n");
    user.write("mine.yml", "image: y\ncommand: [a]\nafter: [net]\n");
    auto c = load_catalog(std::vector<std::string>{sys.path, user.path});
    REQUIRE(c.services.size() == 2);
    for (const auto& s : c.services)
        if (s.name == "net") CHECK(s.command == std::vector<std::string>{"a"});
    bool refused = false;
    for (const auto& [name, why] : c.errors)
        refused |= why.find("already exists; rename this file") != std::string::npos;
    CHECK(refused);
}

TEST_CASE("configuration: keys, validation, overlay and last good", "[config]") {
    auto d = config::defaults();
    CHECK(config::to_text(*config::get(d, "hostname")) == "keel");
    CHECK(config::to_text(*config::get(d, "user_runtime.host_id")) == "100000");
    CHECK_FALSE(config::get(d, "nosuch"));

    auto bad = config::parse("hostname: h\nnetwork:\n  adress: 1.2.3.4/8\n", "c.yml");
    REQUIRE_FALSE(bad);
    CHECK(bad.error().str() == "c.yml:3:3: network.adress: unknown key (did you mean 'address'?)");
    CHECK(config::parse("network: {address: 10.0.0.300/24}\n", "c.yml")
              .error()
              .str()
              .find("network.address: '10.0.0.300/24' is not an IPv4 address") !=
          std::string::npos);
    CHECK(config::parse("hostname: -bad-\n", "c.yml").error().str().find("is not a host name") !=
          std::string::npos);
    CHECK(config::parse("services: {web: {enabled: perhaps}}\n", "c.yml").error().str() ==
          "c.yml:1:27: services.web.enabled: expected true or false");
    CHECK(config::parse("ssh: {authorized_keys: [ssh-dss AAAA]}\n", "c.yml")
              .error()
              .str()
              .find("is not a public key") != std::string::npos);
    CHECK(config::parse("", "c.yml"));

    CHECK(config::value_for("hostnme", "x").error().str() ==
          "unknown key 'hostnme' (did you mean 'hostname'?)");
    CHECK(config::to_text(*config::value_for("network.dns", "10.0.0.1")) ==
          "10.0.0.1"); // a word is a list of one
    CHECK(config::value_for("network.dns", "[10.0.0.1, 10.0.0.2]")->size() == 2);
    CHECK(config::to_text(*config::value_for("network.dns", "[10.0.0.1, 10.0.0.2]")) ==
          "10.0.0.1 10.0.0.2");

    // Authorized keys: one per line as text (what the sshd service gets), since a key has
    // spaces of its own; nothing that would make a second line or carry options.
    const std::string ed = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIHk0 admin@laptop";
    const std::string sk = "sk-ssh-ed25519@openssh.com AAAAGnNrLXNzaC1lZDI1NTE5QG9wZW5zc2guY29t";
    CHECK(config::to_text(*config::value_for("ssh.authorized_keys", ed)) == ed);
    CHECK(config::to_text(*config::value_for("ssh.authorized_keys",
                                             "['" + ed + "', '" + sk + "']")) == ed + "\n" + sk);
    CHECK(config::to_text(*config::value_for("ssh.authorized_keys", "")).empty());
    const std::vector<std::string> bad_keys = {"ssh-ed25519",
                                               "ssh-ed25519 AAAA*bad",
                                               "ssh-dss AAAAB3Nza",
                                               "command=\"sh\" " + ed,
                                               ed + "\nssh-ed25519 AAAAC3 second",
                                               ed + "\r"};
    for (const auto& key : bad_keys) {
        auto v = config::value_for("ssh.authorized_keys", key);
        CHECK_FALSE(v);
        if (!v) CHECK(v.error().str().find("is not a public key") != std::string::npos);
    }
    // Well-formed keys of the types an sshd without OpenSSL cannot check: refused by name.
    for (const std::string key :
         {"ecdsa-sha2-nistp256 AAAAE2VjZHNhLXNoYTItbmlzdHAyNTYAAAAIbmlzdHAyNTY=",
          "ssh-rsa AAAAB3NzaC1yc2EAAAADAQABAAABAQC7 me@host"}) {
        auto v = config::value_for("ssh.authorized_keys", key);
        CHECK_FALSE(v);
        if (!v)
            CHECK(v.error().str().find("Keel's sshd takes Ed25519 keys only") != std::string::npos);
    }

    TempDir t;
    std::string overlay = t.path + "/config.yml", good = t.path + "/config.last-good.yml";
    auto none = config::load(overlay, good, {});
    CHECK(none.source == "defaults");
    t.write("config.yml", "hostname: edge\n");
    t.write("config.last-good.yml", "hostname: older\n");
    auto ok = config::load(overlay, good, {{"network.address", "10.1.1.1/24"}, {"bogus", "1"}});
    CHECK(ok.source == "overlay");
    CHECK(config::to_text(*config::get(ok.effective, "hostname")) == "edge");
    CHECK(config::to_text(*config::get(ok.effective, "network.address")) ==
          "10.1.1.1/24"); // command line wins
    REQUIRE(ok.warnings.size() == 1);
    CHECK(ok.warnings[0].find("keel.config.bogus=1") == 0);
    t.write("config.yml", "hostname: [broken\n");
    auto fallback = config::load(overlay, good, {});
    CHECK(fallback.source == "last good");
    CHECK(fallback.error.find(overlay + ":") == 0);
    CHECK(config::to_text(*config::get(fallback.effective, "hostname")) == "older");
}

// The restart state machine with fake time: no process, no clock.
#include "keeld/log_buffer.h"
#include "keeld/restart.h"

TEST_CASE("restart: backoff doubles to a cap, a stable run forgives, the limit gives up",
          "[restart]") {
    using keel::keeld::after_exit;
    using Kind = keel::keeld::RestartDecision::Kind;
    int failures = 0;
    std::vector<int64_t> delays;
    for (int i = 0; i < 12; ++i) {
        auto d = after_exit(RestartPolicy::always, true, 50, 100, failures);
        REQUIRE(d.kind == Kind::restart);
        delays.push_back(d.delay_ms);
    }
    CHECK(delays == std::vector<int64_t>{100, 200, 400, 800, 1600, 3200, 6400, 12800, 25600, 30000,
                                         30000, 30000});
    // A run of 10 s or more means it was working: the next failure starts over at 100 ms.
    CHECK(after_exit(RestartPolicy::always, true, 10000, 100, failures).delay_ms == 100);
    CHECK(failures == 1);

    // A crash loop ends at the limit: restart_limit restarts, then give up, never over the cap.
    failures = 0;
    int restarts = 0;
    for (;;) {
        auto d = after_exit(RestartPolicy::on_failure, true, 5, 5, failures);
        if (d.kind == Kind::give_up) break;
        REQUIRE(d.kind == Kind::restart);
        CHECK(d.delay_ms <= keel::keeld::kBackoffMaxMs);
        ++restarts;
    }
    CHECK(restarts == 5);
    CHECK(failures == 6);

    // Policies: on-failure lets a clean exit stay down; no never restarts.
    failures = 0;
    CHECK(after_exit(RestartPolicy::on_failure, false, 5, 5, failures).kind == Kind::hold_stopped);
    CHECK(after_exit(RestartPolicy::no, true, 5, 5, failures).kind == Kind::hold_failed);
    CHECK(after_exit(RestartPolicy::no, false, 5, 5, failures).kind == Kind::hold_stopped);
    CHECK(failures == 0);
    CHECK(after_exit(RestartPolicy::always, false, 5, 5, failures).kind ==
          Kind::restart); // always means always

    // Failed starts use the same ladder.
    CHECK(keel::keeld::backoff_ms(1) == 100);
    CHECK(keel::keeld::backoff_ms(4) == 800);
    CHECK(keel::keeld::backoff_ms(1000) == 30000);
}

TEST_CASE(
    "service logs: lines split at \\n, a \\r before it dropped, a partial line kept for later",
    "[service]") {
    char tmpl[] = "/tmp/keel-log-XXXXXX";
    REQUIRE(::mkdtemp(tmpl));
    std::string dir = tmpl;
    keel::keeld::LogBuffer buf(dir + "/svc.log", 3);
    std::string chunk = "one\r\ntwo\n\rthree\r\nfo";
    CHECK(buf.append(chunk.data(), chunk.size(), 0));
    CHECK(buf.tail(10) == std::vector<std::string>{"one", "two", "\rthree"});
    CHECK(buf.append("ur\n", 3, 0));
    CHECK(buf.tail(10) == std::vector<std::string>{"two", "\rthree", "four"}); // 3 lines kept
    uint64_t next = 0;
    CHECK(buf.since(3, next) == std::vector<std::string>{"four"});
    CHECK(next == 4);
    std::filesystem::remove_all(dir);
}

TEST_CASE(
    "service: devices: are allowed by the device cgroup; privileged: true allows every device") {
    TempDir image;
    std::filesystem::create_directories(image.path + "/etc");
    ContainerContext ctx;
    ctx.seccomp_profile = std::string(KEEL_SOURCE_DIR) + "/config/seccomp/default.yml";
    ctx.allow_privileged = true;
    constexpr unsigned rw = runtime::DeviceRule::read | runtime::DeviceRule::write;
    auto s = parse_service("image: " + image.path +
                               "\ncommand: [/bin/true]\nuser: \"0\"\ndevices: [/dev/kmsg]\n",
                           "/etc/keel/services/dev.yml");
    REQUIRE(s);
    auto c = to_container(*s, ctx);
    REQUIRE(c);
    auto rules = runtime::device_filter::effective_rules(*c);
    CHECK(runtime::device_filter::allows(rules, 'c', 1, 11, rw)); // /dev/kmsg
    CHECK_FALSE(runtime::device_filter::allows(rules, 'c', 10, 229, rw));
    s->privileged = true;
    c = to_container(*s, ctx);
    REQUIRE(c);
    CHECK(runtime::device_filter::allows(runtime::device_filter::effective_rules(*c), 'c', 10, 229,
                                         rw));
}

TEST_CASE("service logs: output over the rate is dropped and counted; the file stays capped",
          "[service]") {
    char tmpl[] = "/tmp/keel-log-XXXXXX";
    REQUIRE(::mkdtemp(tmpl));
    std::string dir = tmpl, file = dir + "/svc.log";
    // 100 bytes a second; the file rotates past 300 bytes.
    keel::keeld::LogBuffer buf(file, 500, 300, 100);
    std::string ten = "123456789\n";
    std::string flood;
    for (int i = 0; i < 30; ++i)
        flood += ten;
    CHECK_FALSE(buf.append(flood.data(), flood.size(), 0)); // 300 bytes: 100 kept, on a line's end
    CHECK(buf.tail(500).size() == 10);
    CHECK(buf.dropped_total() == 200);
    // Half a second on: 50 bytes, 5 lines, after the line that says what was dropped.
    CHECK_FALSE(buf.append(flood.data(), flood.size(), 500));
    CHECK(buf.dropped_total() == 450);
    CHECK(buf.tail(6).front() == "[keeld] dropped 200 bytes of output (more than 100 bytes/s)");
    // Said at most once a second: the next count comes with the first line kept after that.
    CHECK(buf.append(ten.data(), ten.size(), 1600));
    CHECK(buf.tail(2) ==
          std::vector<std::string>{"[keeld] dropped 250 bytes of output (more than 100 bytes/s)",
                                   "123456789"});
    for (int64_t t = 2000; t < 60000; t += 1000)
        (void)buf.append(flood.data(), flood.size(), t);
    buf.flush_dropped();
    struct stat st {};
    REQUIRE(::stat(file.c_str(), &st) == 0);
    CHECK(size_t(st.st_size) <= 300 + 100 + 100);
    REQUIRE(::stat((file + ".1").c_str(), &st) == 0);
    CHECK(size_t(st.st_size) <= 300 + 100 + 100);
    std::filesystem::remove_all(dir);
}

TEST_CASE("service: memory_high is a size at or below memory", "[service]") {
    CHECK(
        error_of("image: x\ncommand: [a]\nresources: {memory: 64M, memory_high: 96M}\n", "x.yml") ==
        "x.yml:3:39: resources.memory_high: is above resources.memory (memory.max)");
    CHECK(error_of("image: x\ncommand: [a]\nresources: {memory_high: lots}\n", "x.yml")
              .find("resources.memory_high") != std::string::npos);
    auto only_high =
        parse_service("image: x\ncommand: [a]\nresources: {memory_high: 1G}\n", "x.yml");
    REQUIRE(only_high);
    CHECK(*only_high->resources.memory_high == int64_t{1} << 30);
    CHECK_FALSE(only_high->resources.memory_max);
}

TEST_CASE("service: a user id from the image or the command line never wraps", "[service]") {
    TempDir image;
    std::filesystem::create_directories(image.path + "/etc");
    {
        std::ofstream p(image.path + "/etc/passwd");
        p << "root:x:0:0::/root:/bin/sh\nbad:x:zz:0::/:/bin/sh\nhuge:x:4294967296:0::/:/bin/"
             "sh\napp:x:1000:1000::/:/bin/sh\n";
        std::ofstream g(image.path + "/etc/group");
        g << "root:x:0:\napp:x:1000:\n";
    }
    ContainerContext ctx;
    ctx.seccomp_profile = std::string(KEEL_SOURCE_DIR) + "/config/seccomp/default.yml";
    auto with_user = [&](const std::string& user) {
        auto s = parse_service("image: " + image.path + "\ncommand: [/bin/true]\nuser: \"" + user +
                                   "\"\n",
                               "/etc/keel/services/u.yml");
        REQUIRE(s);
        return to_container(*s, ctx);
    };
    auto app = with_user("app");
    REQUIRE(app);
    CHECK(app->uid == 1000);
    for (const char* bad : {"bad", "huge", "4294967296", "4294967295", "99999999999999999999"}) {
        INFO(bad);
        auto c = with_user(bad); // an error, neither an exception nor uid 0
        REQUIRE_FALSE(c);
        CHECK(c.error().str().find(bad) != std::string::npos);
    }
}
