// service::translate(): a service and the host's answers → a ContainerSpec, with no file
// read, created or looked at. Every path here names nothing on this machine.
#include <linux/capability.h>
#include <sys/mount.h>
#include <unistd.h>

#include <algorithm>
#include <string>

#include <catch2/catch.hpp>

#include "runtime/defaults.h"
#include "service/service_spec.h"

using namespace keel;
using namespace keel::service;

namespace {

const std::string kNowhere = "/nonexistent-keel-translate-test";

bool exists(const std::string& p) {
    return ::access(p.c_str(), F_OK) == 0;
}

ContainerContext nowhere_ctx() {
    ContainerContext ctx;
    ctx.images_dir = kNowhere + "/images";
    ctx.seccomp_profile = kNowhere + "/seccomp.yml";
    ctx.run_dir = kNowhere + "/run";
    ctx.state_dir = kNowhere + "/state";
    ctx.cgroup_prefix = "keel/system/";
    return ctx;
}

HostFacts made_up_facts() {
    HostFacts f;
    f.uid = 1000;
    f.gid = 1001;
    runtime::Device tty;
    tty.path = kNowhere + "/dev/ttyX";
    tty.type = 'c';
    tty.major = 4;
    tty.minor = 64;
    tty.mode = 0620;
    f.devices = {tty};
    f.seccomp = runtime::SeccompProfile{};
    f.last_cap = 5;
    return f;
}

const runtime::Mount* find_mount(const runtime::ContainerSpec& c, const std::string& dest) {
    auto it = std::find_if(c.mounts.begin(), c.mounts.end(),
                           [&](const auto& m) { return m.destination == dest; });
    return it == c.mounts.end() ? nullptr : &*it;
}

} // namespace

TEST_CASE("service translate: needs no filesystem; the host's facts come from the caller",
          "[service]") {
    auto s = parse_service("image: app\ncommand: [/bin/app, --serve]\nuser: app\ngroup: app\n"
                           "environment: {A: b}\ncapabilities: [NET_BIND_SERVICE]\nhost: [net]\n"
                           "mounts: [\"" +
                               kNowhere +
                               "/run/app/sock:/run/sock:rw\", {type: tmpfs, destination: /tmp}]\n"
                               "devices: [" +
                               kNowhere + "/dev/ttyX]\n",
                           "/etc/keel/services/app.yml");
    REQUIRE(s);
    auto ctx = nowhere_ctx();
    // Asking the host fails here: there is no such image.
    auto prepared = prepare_host(*s, ctx);
    REQUIRE_FALSE(prepared);
    CHECK(prepared.error().str() ==
          "/etc/keel/services/app.yml: image 'app' not found at " + kNowhere + "/images/app");

    auto c = translate(*s, ctx, made_up_facts());
    REQUIRE(c);
    CHECK_FALSE(exists(kNowhere)); // the bind source beneath run_dir was not created
    CHECK(c->id == "app");
    CHECK(c->rootfs == kNowhere + "/images/app");
    CHECK(c->args == std::vector<std::string>{"/bin/app", "--serve"});
    CHECK(c->env.back() == "A=b");
    CHECK(c->uid == 1000);
    CHECK(c->gid == 1001);
    CHECK(c->readonly_root);
    CHECK(c->no_new_privileges);
    // A non-root service keeps what it declares as ambient capabilities.
    CHECK(c->caps.ambient == std::vector<int>{CAP_NET_BIND_SERVICE});
    CHECK(c->hostname == "app");
    CHECK(std::none_of(c->namespaces.begin(), c->namespaces.end(),
                       [](const auto& n) { return n.type == runtime::NsType::net; }));
    // The defaults first, then the service's own.
    auto defaults = runtime::defaults::mounts();
    REQUIRE(c->mounts.size() == defaults.size() + 2);
    for (size_t i = 0; i < defaults.size(); ++i)
        CHECK(c->mounts[i].destination == defaults[i].destination);
    const auto* sock = find_mount(*c, "/run/sock");
    REQUIRE(sock);
    CHECK(sock->source == kNowhere + "/run/app/sock");
    CHECK(sock->source_beneath == ctx.run_dir); // no link followed beneath keeld's directory
    CHECK_FALSE(sock->flags & MS_RDONLY);
    REQUIRE(find_mount(*c, "/tmp"));
    CHECK(find_mount(*c, "/tmp")->type == "tmpfs");
    REQUIRE(find_mount(*c, "/sys/fs/cgroup"));
    CHECK(find_mount(*c, "/sys/fs/cgroup")->flags & MS_RDONLY);
    REQUIRE(c->devices.size() == 1);
    CHECK(c->devices[0].major == 4);
    CHECK(c->devices[0].minor == 64);
    CHECK(c->masked_paths == runtime::defaults::masked_paths());
    CHECK(c->readonly_paths == runtime::defaults::readonly_paths());
    CHECK(c->cgroup_path == "keel/system/app");
    CHECK(c->seccomp);
}

TEST_CASE("service translate: privileged gets capabilities up to the kernel's last; a delegated "
          "cgroup is writable",
          "[service]") {
    auto s = parse_service("image: " + kNowhere +
                               "/root\ncommand: [sh]\nprivileged: true\ndelegate_cgroup: true\n"
                               "user_namespace: {host_id: 100000, size: 65536}\n",
                           "/etc/keel/services/nested.yml");
    REQUIRE(s);
    auto ctx = nowhere_ctx();
    HostFacts f = made_up_facts();
    f.uid = f.gid = 0;
    f.seccomp.reset(); // a privileged service has none
    // Refused by the service alone, with the message to_container() has always given.
    auto refused = translate(*s, ctx, f);
    REQUIRE_FALSE(refused);
    CHECK(refused.error().str().find("privileged: true is refused") != std::string::npos);
    ctx.allow_privileged = true;
    auto c = translate(*s, ctx, f);
    REQUIRE(c);
    CHECK(c->caps.bounding == std::vector<int>{0, 1, 2, 3, 4, 5});
    CHECK_FALSE(c->seccomp);
    CHECK(c->uid_maps.size() == 1);
    CHECK(c->uid_maps[0].outside == 100000);
    REQUIRE(find_mount(*c, "/sys/fs/cgroup"));
    CHECK_FALSE(find_mount(*c, "/sys/fs/cgroup")->flags & MS_RDONLY);
    // A nested runtime must see an unmasked /proc.
    CHECK(c->masked_paths.empty());
    CHECK_FALSE(exists(kNowhere));
}

TEST_CASE("runtime defaults: keel spec's mounts differ from a service's only as recorded",
          "[service]") {
    auto service = runtime::defaults::mounts(), oci = runtime::defaults::oci_mounts(false);
    REQUIRE(service.size() == oci.size());
    CHECK(runtime::defaults::oci_options(oci[0]).empty()); // proc, bare
    CHECK(runtime::defaults::oci_options(service[0]) ==
          std::vector<std::string>{"nosuid", "noexec", "nodev"});
    CHECK(runtime::defaults::oci_options(oci[2]).back() == "gid=5"); // devpts
    CHECK(runtime::defaults::oci_options(runtime::defaults::oci_mounts(true)[5]) ==
          std::vector<std::string>{"rbind", "nosuid", "noexec", "nodev", "ro"}); // rootless /sys
    for (size_t i = 0; i < service.size(); ++i)
        CHECK(service[i].destination == oci[i].destination);
}
