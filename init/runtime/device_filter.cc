#include "runtime/device_filter.h"

#include <sys/syscall.h>
#include <unistd.h>

#include <cstddef>
#include <cstring>
#include <fmt/format.h>
#include <limits>
#include <string>

#include "common/fd.h"
#include "common/strings.h"
#include "runtime/container.h"

namespace keel::runtime::device_filter {

static_assert(DeviceRule::mknod == unsigned{BPF_DEVCG_ACC_MKNOD} &&
              DeviceRule::read == unsigned{BPF_DEVCG_ACC_READ} &&
              DeviceRule::write == unsigned{BPF_DEVCG_ACC_WRITE});

namespace {

constexpr DeviceRule allow(char type, int64_t major, int64_t minor,
                           unsigned access = DeviceRule::all) {
    return DeviceRule{true, type, major, minor, access};
}

// runc's default allow list (libcontainer/specconv AllowedDevices), and /dev/console, which
// Keel binds a terminal onto and a service may list.
const DeviceRule kDefaults[] = {
    allow('c', -1, -1, DeviceRule::mknod), // making a node is harmless when opening it is not
    allow('b', -1, -1, DeviceRule::mknod),
    allow('c', 1, 3),    // null
    allow('c', 1, 5),    // zero
    allow('c', 1, 7),    // full
    allow('c', 1, 8),    // random
    allow('c', 1, 9),    // urandom
    allow('c', 5, 0),    // tty
    allow('c', 5, 1),    // console
    allow('c', 5, 2),    // ptmx
    allow('c', 136, -1), // the ptys of a devpts
    allow('c', 10, 200), // tun: runc allows it (removed in 1.2.0, back in 1.2.4 for its users)
};

bool matches(const DeviceRule& r, char type, uint32_t major, uint32_t minor) {
    return (r.type == 'a' || r.type == type) && (r.major < 0 || r.major == major) &&
           (r.minor < 0 || r.minor == minor);
}

// Just enough of an assembler for straight-line code with forward jumps to labels.
class Assembler {
  public:
    using Label = size_t;
    Label label() {
        targets_.push_back(kUnplaced);
        return targets_.size() - 1;
    }
    void place(Label l) { targets_[l] = code_.size(); }
    void emit(uint8_t op, uint8_t dst, uint8_t src = 0, int16_t off = 0, int32_t imm = 0) {
        bpf_insn i{};
        i.code = op;
        i.dst_reg = dst & 0xf;
        i.src_reg = src & 0xf;
        i.off = off;
        i.imm = imm;
        code_.push_back(i);
    }
    void jump(uint8_t op, uint8_t dst, int32_t imm, Label to) {
        fixups_.push_back({code_.size(), to});
        emit(op, dst, 0, 0, imm);
    }
    Result<std::vector<bpf_insn>> finish() {
        for (auto [at, label] : fixups_) {
            if (targets_[label] == kUnplaced)
                return plain_error("device program: a jump to nowhere");
            auto off = static_cast<ptrdiff_t>(targets_[label]) - static_cast<ptrdiff_t>(at + 1);
            if (off < 0 || off > std::numeric_limits<int16_t>::max())
                return plain_error(
                    fmt::format("device program: too many rules ({} instructions)", code_.size()));
            code_[at].off = static_cast<int16_t>(off);
        }
        return std::move(code_);
    }

  private:
    static constexpr size_t kUnplaced = ~size_t{0};
    std::vector<bpf_insn> code_;
    std::vector<size_t> targets_;
    std::vector<std::pair<size_t, Label>> fixups_;
};

// Registers, once the context is loaded: the device's type, the access asked for, its major and
// minor. R0 is scratch until it holds the verdict.
constexpr uint8_t kType = BPF_REG_2, kAccess = BPF_REG_3, kMajor = BPF_REG_4, kMinor = BPF_REG_5;

int32_t imm32(int64_t v) {
    return static_cast<int32_t>(static_cast<uint32_t>(v));
}

// One access bit: the rules last to first, the first matching one decides. A rule that matches
// every device ends the list (what comes before it could never run, and the verifier refuses
// code that cannot run).
void emit_decision(Assembler& a, const std::vector<DeviceRule>& rules, unsigned bit,
                   Assembler::Label allowed) {
    for (auto r = rules.rbegin(); r != rules.rend(); ++r) {
        if (!(r->access & bit)) continue;
        auto next = a.label();
        bool conditional = false;
        if (r->type != 'a') {
            a.jump(BPF_JMP32 | BPF_JNE | BPF_K, kType,
                   r->type == 'b' ? BPF_DEVCG_DEV_BLOCK : BPF_DEVCG_DEV_CHAR, next);
            conditional = true;
        }
        if (r->major >= 0) {
            a.jump(BPF_JMP32 | BPF_JNE | BPF_K, kMajor, imm32(r->major), next);
            conditional = true;
        }
        if (r->minor >= 0) {
            a.jump(BPF_JMP32 | BPF_JNE | BPF_K, kMinor, imm32(r->minor), next);
            conditional = true;
        }
        if (r->allow) {
            a.jump(BPF_JMP | BPF_JA, 0, 0, allowed);
        } else {
            a.emit(BPF_ALU | BPF_MOV | BPF_K, BPF_REG_0, 0, 0, 0);
            a.emit(BPF_JMP | BPF_EXIT, 0);
        }
        a.place(next);
        if (!conditional) return;
    }
    a.emit(BPF_ALU | BPF_MOV | BPF_K, BPF_REG_0, 0, 0, 0);
    a.emit(BPF_JMP | BPF_EXIT, 0);
}

long sys_bpf(int cmd, bpf_attr* attr) {
    return ::syscall(SYS_bpf, cmd, attr, sizeof *attr);
}

} // namespace

std::vector<DeviceRule> effective_rules(const ContainerSpec& spec) {
    std::vector<DeviceRule> rules;
    rules.push_back(DeviceRule{false, 'a', -1, -1, DeviceRule::all});
    for (const auto& d : spec.devices)
        rules.push_back(allow(d.type == 'b' ? 'b' : 'c', d.major, d.minor));
    rules.insert(rules.end(), spec.device_rules.begin(), spec.device_rules.end());
    rules.insert(rules.end(), std::begin(kDefaults), std::end(kDefaults));
    return rules;
}

bool allows(const std::vector<DeviceRule>& rules, char type, uint32_t major, uint32_t minor,
            unsigned access) {
    for (unsigned bit : {DeviceRule::mknod, DeviceRule::read, DeviceRule::write}) {
        if (!(access & bit)) continue;
        bool granted = false;
        for (auto r = rules.rbegin(); r != rules.rend(); ++r) {
            if ((r->access & bit) && matches(*r, type, major, minor)) {
                granted = r->allow;
                break;
            }
        }
        if (!granted) return false;
    }
    return true;
}

Result<std::vector<bpf_insn>> compile(const std::vector<DeviceRule>& rules) {
    Assembler a;
    // struct bpf_cgroup_dev_ctx: access_type is (access << 16) | type.
    a.emit(BPF_LDX | BPF_MEM | BPF_W, kType, BPF_REG_1, offsetof(bpf_cgroup_dev_ctx, access_type));
    a.emit(BPF_ALU | BPF_MOV | BPF_X, kAccess, kType);
    a.emit(BPF_ALU | BPF_RSH | BPF_K, kAccess, 0, 0, 16);
    a.emit(BPF_ALU | BPF_AND | BPF_K, kType, 0, 0, 0xffff);
    a.emit(BPF_LDX | BPF_MEM | BPF_W, kMajor, BPF_REG_1, offsetof(bpf_cgroup_dev_ctx, major));
    a.emit(BPF_LDX | BPF_MEM | BPF_W, kMinor, BPF_REG_1, offsetof(bpf_cgroup_dev_ctx, minor));
    for (unsigned bit : {DeviceRule::mknod, DeviceRule::read, DeviceRule::write}) {
        auto decided = a.label();
        a.emit(BPF_ALU | BPF_MOV | BPF_X, BPF_REG_0, kAccess);
        a.emit(BPF_ALU | BPF_AND | BPF_K, BPF_REG_0, 0, 0, static_cast<int32_t>(bit));
        a.jump(BPF_JMP32 | BPF_JEQ | BPF_K, BPF_REG_0, 0, decided); // not asked for
        emit_decision(a, rules, bit, decided);
        a.place(decided);
    }
    a.emit(BPF_ALU | BPF_MOV | BPF_K, BPF_REG_0, 0, 0, 1);
    a.emit(BPF_JMP | BPF_EXIT, 0);
    return a.finish();
}

bool enforced_here() {
    return !in_child_user_namespace();
}

Status attach(int cgroup_fd, const std::vector<DeviceRule>& rules) {
    auto prog = compile(rules);
    if (!prog) return prog.error();
    // No helper is called, so the license only has to be a string; systemd and crun say GPL.
    static const char license[] = "GPL";
    static const char name[] = "keel_devices";
    static_assert(sizeof name <= BPF_OBJ_NAME_LEN);
    std::string log;
    bpf_attr load{};
    load.prog_type = BPF_PROG_TYPE_CGROUP_DEVICE;
    load.insns = reinterpret_cast<uint64_t>(prog->data());
    load.insn_cnt = static_cast<uint32_t>(prog->size());
    load.license = reinterpret_cast<uint64_t>(license);
    std::memcpy(load.prog_name, name, sizeof name);
    // The kernel makes every bpf fd close-on-exec.
    Fd fd(static_cast<int>(sys_bpf(BPF_PROG_LOAD, &load)));
    if (!fd) {
        int e = errno;
        if (e == EINVAL || e == EACCES) {
            // Once more with the verifier's log, for a message that says why.
            log.assign(64 * 1024, '\0');
            load.log_level = 1;
            load.log_buf = reinterpret_cast<uint64_t>(log.data());
            load.log_size = static_cast<uint32_t>(log.size());
            Fd(static_cast<int>(sys_bpf(BPF_PROG_LOAD, &load)));
            log.resize(std::strlen(log.c_str()));
            auto lines = split(std::string(trim(log)), '\n');
            log = lines.empty() || lines.back().empty() ? "" : " (verifier: " + lines.back() + ")";
        }
        return sys_error(fmt::format("load device program of {} instructions{}", prog->size(), log),
                         e);
    }
    bpf_attr at{};
    at.target_fd = static_cast<uint32_t>(cgroup_fd);
    at.attach_bpf_fd = static_cast<uint32_t>(fd.get());
    at.attach_type = BPF_CGROUP_DEVICE;
    at.attach_flags = BPF_F_ALLOW_MULTI;
    if (sys_bpf(BPF_PROG_ATTACH, &at) < 0) return sys_error("attach device program to the cgroup");
    return {};
}

} // namespace keel::runtime::device_filter
