// The device cgroup: what a list of rules decides (runc's semantics: per access, the last
// matching rule wins), what the runtime adds around a spec's rules, and the eBPF program, run
// here by a small interpreter of the instructions it uses (the kernel cannot test-run a
// cgroup_device program) and checked against the decision for every device and access tried.
#include <random>
#include <string>

#include <catch2/catch.hpp>

#include "runtime/device_filter.h"

using namespace keel;
using namespace keel::runtime;
namespace df = keel::runtime::device_filter;

namespace {

constexpr unsigned R = DeviceRule::read, W = DeviceRule::write, M = DeviceRule::mknod;

DeviceRule rule(bool allow, char type, int64_t major, int64_t minor, unsigned access) {
    return DeviceRule{allow, type, major, minor, access};
}

// Runs the program on one access as the kernel would; returns its r0 (1: allow, 0: deny).
uint64_t run(const std::vector<bpf_insn>& prog, char type, uint32_t major, uint32_t minor,
             unsigned access) {
    bpf_cgroup_dev_ctx ctx{};
    ctx.access_type = (access << 16) | (type == 'b' ? BPF_DEVCG_DEV_BLOCK : BPF_DEVCG_DEV_CHAR);
    ctx.major = major;
    ctx.minor = minor;
    uint64_t r[11] = {};
    for (size_t pc = 0, steps = 0; pc < prog.size() && steps < 100000; ++pc, ++steps) {
        const bpf_insn& i = prog[pc];
        auto u32 = [](uint64_t v) { return static_cast<uint32_t>(v); };
        switch (i.code) {
        case BPF_LDX | BPF_MEM | BPF_W:
            REQUIRE(i.src_reg == BPF_REG_1);
            REQUIRE((i.off >= 0 && i.off + 4 <= int(sizeof ctx)));
            r[i.dst_reg] =
                *reinterpret_cast<const uint32_t*>(reinterpret_cast<const char*>(&ctx) + i.off);
            break;
        case BPF_ALU | BPF_MOV | BPF_X:
            r[i.dst_reg] = u32(r[i.src_reg]);
            break;
        case BPF_ALU | BPF_MOV | BPF_K:
            r[i.dst_reg] = u32(i.imm);
            break;
        case BPF_ALU | BPF_RSH | BPF_K:
            r[i.dst_reg] = u32(r[i.dst_reg]) >> i.imm;
            break;
        case BPF_ALU | BPF_AND | BPF_K:
            r[i.dst_reg] = u32(r[i.dst_reg]) & u32(i.imm);
            break;
        case BPF_JMP32 | BPF_JNE | BPF_K:
            if (u32(r[i.dst_reg]) != u32(i.imm)) pc += i.off;
            break;
        case BPF_JMP32 | BPF_JEQ | BPF_K:
            if (u32(r[i.dst_reg]) == u32(i.imm)) pc += i.off;
            break;
        case BPF_JMP | BPF_JA:
            pc += i.off;
            break;
        case BPF_JMP | BPF_EXIT:
            return r[BPF_REG_0];
        default:
            FAIL("unexpected instruction code " << int(i.code) << " at " << pc);
        }
    }
    FAIL("the program ran off its end");
    return 2;
}

// The verifier refuses a program with an instruction no path reaches, or a jump out of it.
void check_all_reachable(const std::vector<bpf_insn>& prog) {
    std::vector<bool> seen(prog.size());
    std::vector<size_t> todo = {0};
    while (!todo.empty()) {
        size_t pc = todo.back();
        todo.pop_back();
        REQUIRE(pc < prog.size());
        if (seen[pc]) continue;
        seen[pc] = true;
        const bpf_insn& i = prog[pc];
        if (i.code == (BPF_JMP | BPF_EXIT)) continue;
        if (i.code == (BPF_JMP | BPF_JA)) {
            todo.push_back(pc + 1 + i.off);
            continue;
        }
        if ((i.code & 0x07) == BPF_JMP32) todo.push_back(pc + 1 + i.off);
        todo.push_back(pc + 1);
    }
    for (size_t pc = 0; pc < prog.size(); ++pc) {
        INFO("instruction " << pc);
        CHECK(seen[pc]);
    }
}

// The program and allows() agree on every device and access tried.
void check_program(const std::vector<DeviceRule>& rules) {
    auto prog = df::compile(rules);
    REQUIRE(prog.ok());
    check_all_reachable(*prog);
    for (char type : {'c', 'b'})
        for (uint32_t major : {1u, 5u, 7u, 10u, 136u, 4095u})
            for (uint32_t minor : {0u, 1u, 3u, 200u, 229u, 237u})
                for (unsigned access = 1; access <= 7; ++access) {
                    INFO(type << " " << major << ":" << minor << " access " << access);
                    CHECK(run(*prog, type, major, minor, access) ==
                          (df::allows(rules, type, major, minor, access) ? 1u : 0u));
                }
}

} // namespace

TEST_CASE("device cgroup: a spec without rules gets deny-all and the default set") {
    ContainerSpec spec;
    auto rules = df::effective_rules(spec);
    REQUIRE_FALSE(rules.empty());
    CHECK(rules.front() == rule(false, 'a', -1, -1, R | W | M));
    for (auto [major, minor] : {std::pair{1u, 3u},
                                {1u, 5u},
                                {1u, 7u},
                                {1u, 8u},
                                {1u, 9u},
                                {5u, 0u},
                                {5u, 1u},
                                {5u, 2u},
                                {136u, 0u},
                                {136u, 17u},
                                {10u, 200u}})
        CHECK(df::allows(rules, 'c', major, minor, R | W));
    CHECK_FALSE(df::allows(rules, 'c', 10, 229, R)); // /dev/fuse, made with mknod
    CHECK_FALSE(df::allows(rules, 'b', 7, 0, R));    // a loop device
    CHECK_FALSE(df::allows(rules, 'b', 1, 3, R));    // a block device is not /dev/null
    CHECK_FALSE(df::allows(rules, 'c', 137, 0, R));  // not a pty
    // runc allows making any node; opening it is what is decided.
    CHECK(df::allows(rules, 'c', 10, 229, M));
    CHECK(df::allows(rules, 'b', 8, 0, M));
    CHECK_FALSE(df::allows(rules, 'c', 10, 229, M | R));
    check_program(rules);
}

TEST_CASE("device cgroup: per access, the last matching rule decides") {
    std::vector<DeviceRule> rules = {rule(false, 'a', -1, -1, R | W | M),
                                     rule(true, 'c', 10, 229, R | W), rule(false, 'c', 10, 229, W)};
    CHECK(df::allows(rules, 'c', 10, 229, R));
    CHECK_FALSE(df::allows(rules, 'c', 10, 229, W));
    CHECK_FALSE(df::allows(rules, 'c', 10, 229, R | W)); // an open for both needs both
    CHECK_FALSE(df::allows(rules, 'c', 10, 229, M));     // no rule includes mknod
    check_program(rules);

    std::swap(rules[1], rules[2]); // the allow now comes last
    CHECK(df::allows(rules, 'c', 10, 229, R | W));
    check_program(rules);

    // 'a' is any type; -1 any number.
    rules = {rule(true, 'a', -1, -1, R | W | M), rule(false, 'a', 10, -1, R)};
    CHECK_FALSE(df::allows(rules, 'c', 10, 229, R));
    CHECK_FALSE(df::allows(rules, 'b', 10, 1, R));
    CHECK(df::allows(rules, 'c', 10, 229, W));
    CHECK(df::allows(rules, 'c', 11, 229, R));
    check_program(rules);
    CHECK_FALSE(df::allows({}, 'c', 1, 3, R)); // nothing matches: deny
    check_program({});
}

TEST_CASE("device cgroup: an engine's rules and linux.devices") {
    ContainerSpec spec;
    spec.devices.push_back(Device{"/dev/fuse", 'c', 10, 229});
    spec.devices.push_back(Device{"/dev/loop0", 'b', 7, 0});
    SECTION("without rules, the nodes a spec lists are usable (a service's devices:)") {
        auto rules = df::effective_rules(spec);
        CHECK(df::allows(rules, 'c', 10, 229, R | W));
        CHECK(df::allows(rules, 'b', 7, 0, R | W));
        CHECK_FALSE(df::allows(rules, 'b', 7, 1, R));
        check_program(rules);
    }
    SECTION("rules narrow them, as Docker's --device /dev/loop0:/dev/loop0:r") {
        spec.device_rules = {rule(false, 'a', -1, -1, R | W | M), rule(true, 'b', 7, 0, R)};
        auto rules = df::effective_rules(spec);
        CHECK(df::allows(rules, 'b', 7, 0, R));
        CHECK_FALSE(df::allows(rules, 'b', 7, 0, W));
        CHECK_FALSE(df::allows(rules, 'c', 10, 229, R)); // listed, but the deny-all took it back
        CHECK(df::allows(rules, 'c', 1, 3, R | W));      // the defaults come last
        check_program(rules);
    }
    SECTION("no rule takes a default away, as in runc") {
        spec.device_rules = {rule(false, 'c', 1, 3, R | W | M)};
        CHECK(df::allows(df::effective_rules(spec), 'c', 1, 3, R | W));
    }
}

TEST_CASE("device cgroup: the program decides as the rules do, for rule lists at random") {
    std::mt19937 rng(20240601);
    const char types[] = {'a', 'c', 'b'};
    const int64_t majors[] = {-1, 1, 10, 136};
    const int64_t minors[] = {-1, 0, 3, 229};
    for (int n = 0; n < 200; ++n) {
        std::vector<DeviceRule> rules;
        size_t count = rng() % 8;
        for (size_t i = 0; i < count; ++i)
            rules.push_back(rule(rng() % 2, types[rng() % 3], majors[rng() % 4], minors[rng() % 4],
                                 1 + rng() % 7));
        INFO("rule list " << n);
        check_program(rules);
    }
}
