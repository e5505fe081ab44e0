// The default seccomp profile is data: it must parse, resolve its capability conditions,
// compile, and refuse what Docker's refuses when a real process installs it.
#include <linux/capability.h>
#include <linux/seccomp.h>
#include <pthread.h>
#include <sched.h>
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

std::vector<int> docker_without_sys_admin() {
    auto caps = caps::docker_default();
    REQUIRE(std::count(caps.begin(), caps.end(), CAP_SYS_ADMIN) == 0);
    return caps;
}

std::string parse_error(const std::string& yaml) {
    auto p = seccomp::parse_profile(yaml, "p.yml", {});
    REQUIRE_FALSE(p.ok());
    return p.error().str();
}

// Runs `fn` in a child under the profile; returns the errno it reports through its exit code.
// The child exits with 254 when the filter cannot be installed.
int errno_under(const SeccompProfile& profile, int (*fn)()) {
    auto prog = seccomp::compile(profile);
    REQUIRE(prog.ok());
    pid_t pid = ::fork();
    REQUIRE(pid >= 0);
    if (pid == 0) {
        // Without no_new_privs (or CAP_SYS_ADMIN) the kernel refuses an unprivileged filter.
        ::prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0);
        if (seccomp::install(*prog) != 0) ::_exit(254);
        ::_exit(fn());
    }
    int status = 0;
    REQUIRE(::waitpid(pid, &status, 0) == pid);
    REQUIRE(WIFEXITED(status));
    return WEXITSTATUS(status);
}

int result(long r) {
    return r < 0 ? errno : 0;
}

// Each call is harmless if the filter let it through: the arguments are invalid or the
// target does not exist, so without the filter the answer would differ from EPERM as root.
int try_mount() {
    return result(::mount("none", "/nonexistent/keel-seccomp-test", "tmpfs", 0, nullptr));
}
int try_keyctl() {
    return result(::syscall(SYS_keyctl, -1L, 0, 0, 0, 0));
}
int try_kexec() {
    return result(::syscall(SYS_kexec_load, 0, 0, nullptr, 0));
}
int try_unshare() {
    return result(::syscall(SYS_unshare, CLONE_NEWNS));
}
int try_clone3() {
    return result(::syscall(SYS_clone3, nullptr, 0));
}
int try_getpid() {
    return ::syscall(SYS_getpid) > 0 ? 0 : errno;
}
// fork(2) is clone(2) without namespace flags, which the masked rule lets through.
int try_fork() {
    pid_t pid = ::fork();
    if (pid < 0) return errno;
    if (pid == 0) ::_exit(0);
    int status = 0;
    return ::waitpid(pid, &status, 0) == pid && WIFEXITED(status) ? 0 : ECHILD;
}
// glibc tries clone3 first for a new thread; the ENOSYS answer must send it to clone.
int try_thread() {
    pthread_t t;
    int err = ::pthread_create(
        &t, nullptr, [](void*) -> void* { return nullptr; }, nullptr);
    return err ? err : ::pthread_join(t, nullptr);
}

} // namespace

TEST_CASE("seccomp: the default profile resolves capability conditions") {
    auto plain = seccomp::load_profile(kDefault, docker_without_sys_admin());
    REQUIRE(plain.ok());
    CHECK(plain->default_action == "SCMP_ACT_ERRNO");
    CHECK(plain->default_errno == EPERM);
    CHECK(plain->architectures == std::vector<std::string>{"SCMP_ARCH_X86_64", "SCMP_ARCH_X86"});
    CHECK(allows(*plain, "read"));
    CHECK(allows(*plain, "getpid"));
    CHECK(allows(*plain, "arch_prctl")); // x86_64-only rule, kept on this architecture
    CHECK(allows(*plain, "chroot"));     // CAP_SYS_CHROOT is in Docker's default set
    CHECK(allows(*plain, "clone"));      // only with the namespace flags masked out
    for (const char* refused : {"mount",
                                "umount2",
                                "pivot_root",
                                "kexec_load",
                                "kexec_file_load",
                                "init_module",
                                "finit_module",
                                "delete_module",
                                "keyctl",
                                "add_key",
                                "request_key",
                                "bpf",
                                "perf_event_open",
                                "open_by_handle_at",
                                "reboot",
                                "swapon",
                                "swapoff",
                                "unshare",
                                "setns",
                                "acct",
                                "iopl",
                                "settimeofday",
                                "syslog",
                                "io_uring_setup"}) {
        INFO(refused);
        CHECK_FALSE(allows(*plain, refused));
    }
    // The argument-checked clone rule and the clone3 ENOSYS rule exist only without CAP_SYS_ADMIN.
    auto clone_rule =
        std::find_if(plain->syscalls.begin(), plain->syscalls.end(), [](const SeccompRule& r) {
            return r.names == std::vector<std::string>{"clone"};
        });
    REQUIRE(clone_rule != plain->syscalls.end());
    REQUIRE(clone_rule->args.size() == 1);
    CHECK(clone_rule->args[0].op == "SCMP_CMP_MASKED_EQ");
    CHECK(clone_rule->args[0].value == 0x7E020000u);

    auto admin = seccomp::load_profile(kDefault, {CAP_SYS_ADMIN});
    REQUIRE(admin.ok());
    CHECK(allows(*admin, "mount"));
    CHECK(allows(*admin, "umount2"));
    CHECK(allows(*admin, "unshare"));
    CHECK(allows(*admin, "clone3"));
    CHECK_FALSE(allows(*admin, "keyctl")); // no capability unlocks the keyring calls
    CHECK_FALSE(allows(*admin, "kexec_load"));
    CHECK_FALSE(allows(*admin, "chroot"));
    for (const auto& r : admin->syscalls)
        CHECK(r.action != "SCMP_ACT_ERRNO"); // no clone3 ENOSYS

    auto module = seccomp::load_profile(kDefault, {CAP_SYS_MODULE});
    REQUIRE(module.ok());
    CHECK(allows(*module, "finit_module"));
    CHECK_FALSE(allows(*module, "mount"));

    auto boot = seccomp::load_profile(kDefault, {CAP_SYS_BOOT});
    REQUIRE(boot.ok());
    CHECK(allows(*boot, "reboot"));
    CHECK_FALSE(allows(*boot, "kexec_load"));
}

TEST_CASE("seccomp: the default profile compiles to a BPF program") {
    auto p = seccomp::load_profile(kDefault, docker_without_sys_admin());
    REQUIRE(p.ok());
    auto prog = seccomp::compile(*p);
    REQUIRE(prog.ok());
    CHECK(prog->filter.size() > 100);
    CHECK(prog->flags == 0);

    // With every capability, rules overlap (syslog, bpf, clone): libseccomp must accept them.
    std::vector<int> all;
    for (int c = 0; c <= CAP_LAST_CAP; ++c)
        all.push_back(c);
    auto everything = seccomp::load_profile(kDefault, all);
    REQUIRE(everything.ok());
    auto big = seccomp::compile(*everything);
    INFO((big.ok() ? "" : big.error().str()));
    REQUIRE(big.ok());
    CHECK(big->filter.size() > prog->filter.size());
}

TEST_CASE("seccomp: a process under the default profile gets EPERM for the refused calls") {
    auto p = seccomp::load_profile(kDefault, docker_without_sys_admin());
    REQUIRE(p.ok());
    CHECK(errno_under(*p, try_mount) == EPERM);
    CHECK(errno_under(*p, try_keyctl) == EPERM);
    CHECK(errno_under(*p, try_kexec) == EPERM);
    CHECK(errno_under(*p, try_unshare) == EPERM);
    CHECK(errno_under(*p, try_clone3) == ENOSYS); // so that glibc falls back to clone
    CHECK(errno_under(*p, try_getpid) == 0);
    CHECK(errno_under(*p, try_fork) == 0);
    CHECK(errno_under(*p, try_thread) == 0);

    // The control: without the filter's refusal keyctl fails for its own reason.
    SeccompProfile allow_all;
    allow_all.default_action = "SCMP_ACT_ALLOW";
    CHECK(errno_under(allow_all, try_keyctl) != EPERM);
}

TEST_CASE("seccomp: profile errors name the file, line and key") {
    CHECK(parse_error("default_action: SCMP_ACT_ERRNO\ndefault_errno: EPERM\n- read\n") ==
          "p.yml:3: end of map not found");
    CHECK(parse_error("default_action: SCMP_ACT_ERRNO\n\tdefault_errno: EPERM\n") ==
          "p.yml:2: illegal tab when looking for indentation");
    CHECK(parse_error("default_action: SCMP_ACT_ERRNO\nsyscalls:\n  - nmes: [read]\n    action: "
                      "SCMP_ACT_ALLOW\n") ==
          "p.yml:3: syscalls[0]: unknown key 'nmes' (did you mean 'names'?)");
    CHECK(parse_error("default_action: SCMP_ACT_ERRNO\ndefault_erno: EPERM\n") ==
          "p.yml:2: unknown key 'default_erno' (did you mean 'default_errno'?)");
    CHECK(parse_error("syscalls:\n  - names: [read]\n    action: SCMP_ACT_ALLOWED\n") ==
          "p.yml:3: syscalls[0].action: unknown action 'SCMP_ACT_ALLOWED' (did you mean "
          "'SCMP_ACT_ALLOW'?)");
    CHECK(parse_error("syscalls:\n  - names: [mount]\n    action: SCMP_ACT_ALLOW\n    caps_any: "
                      "[CAP_SYS_ADMN]\n") ==
          "p.yml:4: syscalls[0].caps_any: unknown capability 'CAP_SYS_ADMN'");
    // A misspelt capability is found even when another condition already dropped the rule.
    CHECK(parse_error("syscalls:\n  - names: [mount]\n    action: SCMP_ACT_ALLOW\n    caps_any: "
                      "[CAP_SYS_ADMIN]\n"
                      "    caps_none: [CAP_BOGUS]\n") ==
          "p.yml:5: syscalls[0].caps_none: unknown capability 'CAP_BOGUS'");
    CHECK(parse_error("syscalls:\n  - names: [clone]\n    action: SCMP_ACT_ALLOW\n"
                      "    args: [{index: 0, value: 1, op: SCMP_CMP_EQUAL}]\n") ==
          "p.yml:4: syscalls[0].args[0].op: unknown operator 'SCMP_CMP_EQUAL' (did you mean "
          "'SCMP_CMP_EQ'?)");
    CHECK(parse_error("syscalls:\n  - names: [clone]\n    action: SCMP_ACT_ALLOW\n"
                      "    args: [{index: 6, value: 1, op: SCMP_CMP_EQ}]\n") ==
          "p.yml:4: syscalls[0].args[0].index: 6 is out of range (at most 5)");
    CHECK(parse_error("default_errno: EPREM\n") == "p.yml:1: default_errno: unknown errno 'EPREM'");
    CHECK(parse_error("architectures: [SCMP_ARCH_VAX]\n") ==
          "p.yml:1: architectures: unknown architecture 'SCMP_ARCH_VAX'");
    CHECK(parse_error("flags: [SECCOMP_FILTER_FLAG_LOGG]\n") ==
          "p.yml:1: flags: unknown flag 'SECCOMP_FILTER_FLAG_LOGG' (did you mean "
          "'SECCOMP_FILTER_FLAG_LOG'?)");
}

TEST_CASE("seccomp: the YAML format") {
    auto p = seccomp::parse_profile(
        "default_action: SCMP_ACT_KILL_PROCESS\n"
        "flags: [SECCOMP_FILTER_FLAG_LOG]\n"
        "syscalls:\n"
        "  - names: read\n"
        "    action: SCMP_ACT_ERRNO\n"
        "    errno: 38\n"
        "  - names: [clone]\n"
        "    action: SCMP_ACT_ALLOW\n"
        "    args: [{index: 0, op: SCMP_CMP_MASKED_EQ, value: 0xff, value_two: 0x11}]\n"
        "  - names: [mount]\n"
        "    action: SCMP_ACT_ALLOW\n"
        "    caps_any: [CAP_SYS_ADMIN, CAP_SYS_BOOT]\n"
        "  - names: [write]\n"
        "    action: SCMP_ACT_ALLOW\n"
        "    arches: [SCMP_ARCH_AARCH64]\n",
        "p.yml", {CAP_SYS_BOOT});
    INFO((p.ok() ? "" : p.error().str()));
    REQUIRE(p.ok());
    CHECK(p->default_action == "SCMP_ACT_KILL_PROCESS");
    CHECK(p->flags == std::vector<std::string>{"SECCOMP_FILTER_FLAG_LOG"});
    REQUIRE(p->syscalls.size() == 3); // the aarch64-only rule is dropped
    CHECK(p->syscalls[0].names == std::vector<std::string>{"read"});
    CHECK(p->syscalls[0].errno_ret == ENOSYS);
    CHECK(p->syscalls[1].args[0].value == 0xff);
    CHECK(p->syscalls[1].args[0].value_two == 0x11);
    CHECK(p->syscalls[2].names == std::vector<std::string>{"mount"});
    auto prog = seccomp::compile(*p);
    REQUIRE(prog.ok());
    CHECK(prog->flags == SECCOMP_FILTER_FLAG_LOG);
}

TEST_CASE("seccomp: compile refuses what libseccomp cannot express") {
    SeccompProfile bad_arch;
    bad_arch.architectures = {"SCMP_ARCH_VAX"};
    auto arch = seccomp::compile(bad_arch);
    REQUIRE_FALSE(arch.ok());
    CHECK(arch.error().str() == "seccomp: unknown architecture SCMP_ARCH_VAX");

    SeccompProfile bad_action;
    bad_action.syscalls.push_back(SeccompRule{{"read"}, "SCMP_ACT_PERMIT", std::nullopt, {}});
    auto action = seccomp::compile(bad_action);
    REQUIRE_FALSE(action.ok());
    CHECK(action.error().str() == "seccomp: unknown action SCMP_ACT_PERMIT");

    SeccompProfile bad_op;
    bad_op.syscalls.push_back(SeccompRule{
        {"read"}, "SCMP_ACT_ALLOW", std::nullopt, {SeccompArg{0, 1, 0, "SCMP_CMP_LIKE"}}});
    auto op = seccomp::compile(bad_op);
    REQUIRE_FALSE(op.ok());
    CHECK(op.error().str() == "seccomp: unknown operator SCMP_CMP_LIKE");

    SeccompProfile bad_flag;
    bad_flag.flags = {"SECCOMP_FILTER_FLAG_NEW_LISTENER"};
    auto flag = seccomp::compile(bad_flag);
    REQUIRE_FALSE(flag.ok());
    CHECK(flag.error().str() == "seccomp: unknown flag SECCOMP_FILTER_FLAG_NEW_LISTENER");

    // A rule repeating the default action changes nothing and is skipped; an unknown syscall
    // name (a newer kernel's call, another architecture's) is skipped too.
    SeccompProfile redundant;
    redundant.syscalls.push_back(SeccompRule{{"mount"}, "SCMP_ACT_ERRNO", std::nullopt, {}});
    redundant.syscalls.push_back(
        SeccompRule{{"no_such_call", "read"}, "SCMP_ACT_ALLOW", std::nullopt, {}});
    CHECK(seccomp::compile(redundant).ok());
}

TEST_CASE("seccomp: a loaded profile is remembered by content, so an edited file is read again") {
    char dir[] = "/tmp/keel-seccomp-XXXXXX";
    REQUIRE(::mkdtemp(dir));
    std::string path = std::string(dir) + "/p.yml";
    auto write = [&](const std::string& text) {
        FILE* f = std::fopen(path.c_str(), "w");
        REQUIRE(f);
        std::fputs(text.c_str(), f);
        std::fclose(f);
    };
    write(
        "default_action: SCMP_ACT_ERRNO\nsyscalls:\n  - {names: [read], action: SCMP_ACT_ALLOW}\n");
    auto first = seccomp::load_profile(path, {});
    auto again = seccomp::load_profile(path, {});
    REQUIRE(first.ok());
    REQUIRE(again.ok());
    CHECK(again->syscalls.size() == 1);
    CHECK(again->syscalls[0].names == std::vector<std::string>{"read"});
    // The same file, capability conditions resolved for another grant: not the cached one.
    write("default_action: SCMP_ACT_ERRNO\nsyscalls:\n  - {names: [mount], action: SCMP_ACT_ALLOW, "
          "caps_any: "
          "[CAP_SYS_ADMIN]}\n");
    auto without = seccomp::load_profile(path, {});
    auto with = seccomp::load_profile(path, {CAP_SYS_ADMIN});
    REQUIRE(without.ok());
    REQUIRE(with.ok());
    CHECK(without->syscalls.empty());
    REQUIRE(with->syscalls.size() == 1);
    CHECK(with->syscalls[0].names == std::vector<std::string>{"mount"});
    // Broken after it loaded once: the error, not the remembered profile.
    write("default_action: SCMP_ACT_ERRNO\nsyscals: []\n");
    auto broken = seccomp::load_profile(path, {});
    CHECK_FALSE(broken.ok());
    if (!broken.ok())
        CHECK(broken.error().str().find("unknown key 'syscals'") != std::string::npos);
    std::remove(path.c_str());
    ::rmdir(dir);
}
