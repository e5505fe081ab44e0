// The default seccomp profile is data: it must parse, resolve its capability conditions,
// compile, and refuse what Docker's refuses when a real process installs it.
#include <linux/capability.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>

#include <catch2/catch.hpp>

#include "runtime/capabilities.h"
#include "runtime/seccomp.h"

using namespace keel;
using namespace keel::runtime;

namespace {

const std::string kDefault = std::string(KEEL_SOURCE_DIR) + "/config/seccomp/default.yml";

bool allows(const SeccompProfile& p, const std::string& call) {
    return std::any_of(p.syscalls.begin(), p.syscalls.end(), [&](const SeccompRule& r) {
        return r.action == "SCMP_ACT_ALLOW" && std::count(r.names.begin(), r.names.end(), call);
    });
}

// Runs `fn` in a child under the profile; returns the errno it reports through its exit code.
int errno_under(const SeccompProfile& profile, int (*fn)()) {
    auto prog = seccomp::compile(profile);
    REQUIRE(prog.ok());
    pid_t pid = ::fork();
    REQUIRE(pid >= 0);
    if (pid == 0) {
        ::prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0);
        if (seccomp::install(*prog) != 0) ::_exit(254);
        ::_exit(fn());
    }
    int status = 0;
    REQUIRE(::waitpid(pid, &status, 0) == pid);
    REQUIRE(WIFEXITED(status));
    return WEXITSTATUS(status);
}

int result(long r) { return r < 0 ? errno : 0; }

} // namespace

TEST_CASE("the default profile resolves capability conditions") {
    auto plain = seccomp::load_profile(kDefault, caps::docker_default());
    REQUIRE(plain.ok());
    CHECK(plain->default_action == "SCMP_ACT_ERRNO");
    CHECK(plain->default_errno == EPERM);
    CHECK(allows(*plain, "read"));
    CHECK(allows(*plain, "chroot")); // CAP_SYS_CHROOT is in Docker's default set
    for (const char* refused : {"mount", "umount2", "pivot_root", "kexec_load", "init_module", "finit_module",
                                "delete_module", "keyctl", "add_key", "request_key", "bpf", "perf_event_open",
                                "open_by_handle_at", "reboot", "swapon", "unshare", "setns"}) {
        INFO(refused);
        CHECK_FALSE(allows(*plain, refused));
    }

    auto admin = seccomp::load_profile(kDefault, {CAP_SYS_ADMIN});
    REQUIRE(admin.ok());
    CHECK(allows(*admin, "mount"));
    CHECK(allows(*admin, "unshare"));
    CHECK_FALSE(allows(*admin, "keyctl")); // no capability unlocks the keyring calls
    CHECK_FALSE(allows(*admin, "chroot"));

    auto module = seccomp::load_profile(kDefault, {CAP_SYS_MODULE});
    REQUIRE(module.ok());
    CHECK(allows(*module, "finit_module"));
}

TEST_CASE("the default profile compiles to a BPF program") {
    auto p = seccomp::load_profile(kDefault, caps::docker_default());
    REQUIRE(p.ok());
    auto prog = seccomp::compile(*p);
    REQUIRE(prog.ok());
    CHECK(prog->filter.size() > 100);
}

TEST_CASE("a process under the default profile gets EPERM for the refused calls") {
    auto p = seccomp::load_profile(kDefault, caps::docker_default());
    REQUIRE(p.ok());
    CHECK(errno_under(*p, [] { return result(::mount("none", "/tmp", "tmpfs", 0, nullptr)); }) == EPERM);
    CHECK(errno_under(*p, [] { return result(::syscall(SYS_keyctl, 0, 0, 0, 0, 0)); }) == EPERM);
    CHECK(errno_under(*p, [] { return result(::syscall(SYS_kexec_load, 0, 0, nullptr, 0)); }) == EPERM);
    CHECK(errno_under(*p, [] { return result(::syscall(SYS_unshare, CLONE_NEWNS)); }) == EPERM);
    CHECK(errno_under(*p, [] { return result(::syscall(SYS_clone3, nullptr, 0)); }) == ENOSYS);
    CHECK(errno_under(*p, [] { return result(::getppid() > 0 ? 0 : -1); }) == 0);
}

TEST_CASE("profile errors name the file, line and key") {
    auto broken = seccomp::parse_profile("default_action: [unclosed\n", "p.yml", {});
    REQUIRE_FALSE(broken.ok());
    CHECK(broken.error().str().rfind("p.yml:", 0) == 0);

    auto key = seccomp::parse_profile("default_action: SCMP_ACT_ERRNO\nsyscalls:\n  - nmes: [read]\n    action: SCMP_ACT_ALLOW\n",
                                      "p.yml", {});
    REQUIRE_FALSE(key.ok());
    CHECK(key.error().str() == "p.yml:3: syscalls[0].nmes: unknown key 'nmes' (did you mean 'names'?)");

    auto action = seccomp::parse_profile("syscalls:\n  - names: [read]\n    action: SCMP_ACT_ALLOWED\n", "p.yml", {});
    REQUIRE_FALSE(action.ok());
    CHECK(action.error().str() ==
          "p.yml:3: syscalls[0].action: unknown action 'SCMP_ACT_ALLOWED' (did you mean 'SCMP_ACT_ALLOW'?)");

    auto cap = seccomp::parse_profile("syscalls:\n  - names: [mount]\n    action: SCMP_ACT_ALLOW\n    caps_any: [CAP_SYS_ADMN]\n",
                                      "p.yml", {});
    REQUIRE_FALSE(cap.ok());
    CHECK(cap.error().str() == "p.yml:4: syscalls[0].caps_any: unknown capability 'CAP_SYS_ADMN'");

    SeccompProfile bad;
    bad.architectures = {"SCMP_ARCH_VAX"};
    auto prog = seccomp::compile(bad);
    REQUIRE_FALSE(prog.ok());
    CHECK(prog.error().str() == "seccomp: unknown architecture SCMP_ARCH_VAX");
}
