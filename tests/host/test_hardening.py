"""The keel binary as it ships (PID 1, keeld, the runtime and the CLI) is hardened: static-pie,
RELRO with BIND_NOW, a non-executable stack, stack canaries and fortified libc calls in Keel's
own code, and CET instrumentation (endbr64) in Keel's own functions.

The shipped binary is stripped; its symbols are in keel.debug beside it (CMake's post-build
step). The names come from there, the code bytes and headers from the shipped file itself.
"""
import bisect
import os
import re
import subprocess
import unittest

KEEL = os.environ["KEEL_BIN"]
DEBUG = KEEL + ".debug"
BUILD = os.path.dirname(os.path.dirname(KEEL))  # build/init/keel -> build


def run(*cmd):
    r = subprocess.run(cmd, capture_output=True, text=True, check=True)
    return r.stdout


def symbols():
    """name -> (address, size, nm type) of every function in keel.debug (demangled)."""
    out = {}
    for line in run("nm", "-S", "-C", "--defined-only", DEBUG).splitlines():
        m = re.match(r"([0-9a-f]+) ([0-9a-f]+) ([tTwW]) (.*)", line)
        if m:
            out[m.group(4)] = (int(m.group(1), 16), int(m.group(2), 16), m.group(3))
    return out


def plt_targets():
    """PLT stub address -> the IFUNC it reaches (__memcpy_chk and friends are IFUNCs: calls
    go through a PLT stub whose GOT slot the start-up code fills from the resolver)."""
    resolvers = {}
    for line in run("nm", "--defined-only", DEBUG).splitlines():
        m = re.match(r"([0-9a-f]+) i (\S+)", line)
        if m:
            resolvers.setdefault(int(m.group(1), 16), m.group(2))
    slots = {}
    for m in re.finditer(r"^([0-9a-f]+)\s+\S+\s+R_X86_64_IRELATIVE\s+([0-9a-f]+)", run("readelf", "-rW", KEEL), re.M):
        slots[int(m.group(1), 16)] = resolvers.get(int(m.group(2), 16), "?")
    out = {}
    plt = run("objdump", "-d", "--no-show-raw-insn", "-j", ".plt", KEEL)
    for m in re.finditer(r"^\s*([0-9a-f]+):\s+jmp\s+\*0x[0-9a-f]+\(%rip\)\s+# (?:0x)?([0-9a-f]+)", plt, re.M):
        slot = int(m.group(2), 16)
        if slot in slots:
            out[int(m.group(1), 16)] = slots[slot]
    return out


class Disassembly:
    """Each call instruction of the shipped binary's .text, by the Keel function it is in."""

    def __init__(self, funcs):
        self.starts = sorted((a, a + n, name) for name, (a, n, _) in funcs.items() if n)
        self.keys = [s[0] for s in self.starts]
        self.calls = {}  # function name -> [target address]
        text = run("objdump", "-d", "--no-show-raw-insn", "-j", ".text", KEEL)
        for m in re.finditer(r"^\s*([0-9a-f]+):\s+call\s+(?:0x)?([0-9a-f]+)\b", text, re.M):
            at, target = int(m.group(1), 16), int(m.group(2), 16)
            i = bisect.bisect_right(self.keys, at) - 1
            if i >= 0 and at < self.starts[i][1]:
                self.calls.setdefault(self.starts[i][2], []).append(target)


class ShippedBinary(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.elf_header = run("readelf", "-W", "-h", KEEL)
        cls.program_headers = run("readelf", "-W", "-l", KEEL)
        cls.dynamic = run("readelf", "-W", "-d", KEEL)
        cls.funcs = symbols()
        cls.keel_funcs = {n: v for n, v in cls.funcs.items() if n.startswith("keel::") and v[1] > 0}

    def test_static_pie(self):
        self.assertRegex(self.elf_header, r"Type:\s+DYN", "not position independent")
        self.assertNotIn("INTERP", self.program_headers, "a dynamic loader is named: not static")
        self.assertNotIn("NEEDED", self.dynamic, "links shared libraries: not static")
        self.assertRegex(self.dynamic, r"\(FLAGS_1\).*\bPIE\b")

    def test_relro_and_bind_now(self):
        self.assertIn("GNU_RELRO", self.program_headers)
        self.assertRegex(self.dynamic, r"\(FLAGS\).*\bBIND_NOW\b")
        self.assertRegex(self.dynamic, r"\(FLAGS_1\).*\bNOW\b")

    def test_stack_not_executable(self):
        m = re.search(r"GNU_STACK\s+(?:\S+\s+){5}(\S+)", self.program_headers)
        self.assertIsNotNone(m, self.program_headers)
        self.assertNotIn("E", m.group(1), "executable stack")

    def test_stripped_and_debug_link(self):
        self.assertNotIn(".symtab", run("readelf", "-W", "-S", KEEL))
        self.assertIn(".gnu_debuglink", run("readelf", "-W", "-S", KEEL))
        self.assertGreater(len(self.keel_funcs), 500, "keel.debug lacks Keel's symbols")

    def test_canaries_in_keel_code(self):
        chk_fail = self.funcs.get("__stack_chk_fail")
        self.assertIsNotNone(chk_fail, "no __stack_chk_fail linked: nothing has a canary")
        d = Disassembly(self.keel_funcs)
        guarded = [n for n, targets in d.calls.items() if chk_fail[0] in targets]
        print(f"{len(guarded)} of {len(self.keel_funcs)} Keel functions check a stack canary")
        # -fstack-protector-strong guards every function with a local array or an address-taken
        # local: in Keel's code that is hundreds (the parsers, the runtime's path handling).
        self.assertGreater(len(guarded), 200)
        for must in ("keel::runtime::devices::populate", "keel::pid1::parse_cmdline"):
            hits = [n for n in guarded if n.startswith(must + "(")]
            if any(n.startswith(must + "(") for n in self.keel_funcs):
                self.assertTrue(hits, f"{must} has no canary check")

    def test_fortified_calls_in_keel_code(self):
        chk = {a: n for n, (a, _, _) in self.funcs.items()
               if re.fullmatch(r"__\w+_chk", n) and n != "__stack_chk_fail"}
        chk.update({a: n for a, n in plt_targets().items() if re.fullmatch(r"__\w+_chk", n)})
        d = Disassembly(self.keel_funcs)
        used = {chk[t] for targets in d.calls.values() for t in targets if t in chk}
        print("fortified calls from Keel's code:", " ".join(sorted(used)))
        self.assertTrue(used, "no _FORTIFY_SOURCE checked call in Keel's code")

    def test_keel_functions_start_with_endbr64(self):
        # -fcf-protection=full: every function that may be reached indirectly starts with
        # endbr64 (IBT). GCC leaves it out only where it can prove no indirect call: local
        # functions whose address is never taken. So every global one has it.
        sections = run("readelf", "-W", "-S", KEEL)
        m = re.search(r"\.text\s+PROGBITS\s+([0-9a-f]+)\s+([0-9a-f]+)\s+([0-9a-f]+)", sections)
        addr, off = int(m.group(1), 16), int(m.group(2), 16)
        with open(KEEL, "rb") as f:
            data = f.read()
        starts = {n: data[off + a - addr:off + a - addr + 4] for n, (a, _, t) in self.keel_funcs.items() if t == "T"}
        without = sorted(n for n, b in starts.items() if b != b"\xf3\x0f\x1e\xfa")
        print(f"{len(starts) - len(without)} of {len(starts)} global Keel functions start with endbr64")
        self.assertGreater(len(starts), 200)
        self.assertEqual(without, [])

    def test_keel_objects_carry_cet_properties(self):
        libs = [os.path.join(dp, f) for dp, _, fs in os.walk(os.path.join(BUILD, "init"))
                for f in fs if re.fullmatch(r"libkeel_\w+\.a", f)]
        self.assertTrue(libs)
        for lib in libs:
            notes = run("readelf", "-W", "-n", lib)
            objects = notes.count("File: ")
            cet = len(re.findall(r"x86 feature: IBT, SHSTK", notes))
            self.assertEqual(cet, objects, f"{lib}: {objects - cet} objects without IBT/SHSTK")


if __name__ == "__main__":
    unittest.main(verbosity=2)
