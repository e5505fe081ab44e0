"""sshd, ssh-keygen and sftp-server for the sshd service's image (OpenSSH from Debian's
source, static with musl, without OpenSSL).

The sshd service's sshd, ssh-keygen and sftp-server are built here from Debian's source
package of the openssh-server in the package lists (Debian's patches applied), linked
statically against musl, without OpenSSL: OpenSSH's own Ed25519, Curve25519, sntrup761,
ChaCha20-Poly1305, AES-CTR and SHA-2 are exactly the modern set the sshd_config offers, and
the three binaries need no shared library and no dynamic loader. Debian's dynamically linked
packages needed libcrypto, glibc, PAM, Kerberos, SELinux, audit, libwrap, libsystemd...:
5 MB compressed in the initramfs, against well under 1 MB for these. The cost: no ECDSA or
RSA keys (host keys and authorized keys are Ed25519; init/config's ssh.authorized_keys
accepts nothing else), no AES-GCM.

Cached in build/cache/openssh-build/ by OpenSSH version, musl and gcc versions, and
everything below that shapes the build, so a rebuild only copies three files.
"""

import hashlib
import json
import os
import re
import shutil
import tempfile
from pathlib import Path

from imagelib.apt import apt_candidates, ensure_musl, fetch_source
from imagelib.util import die, log, run
from recipes import Package

OPENSSH_CONFIGURE = [
    "--prefix=/usr", "--sysconfdir=/etc/ssh", "--libexecdir=/usr/lib/openssh",
    "--with-privsep-path=/run/sshd",  # keel-sshd makes it, empty, on the container's /run
    "--with-privsep-user=sshd",
    "--with-pid-dir=/run",  # sshd_config says PidFile /run/sshd.pid anyway
    "--without-openssl",  # OpenSSH's internal crypto only (Ed25519 keys)
    "--with-zlib=no",  # no compression: the server offers none
    # Off, as Debian's own small udeb build has them, or not compiled in at all: each is a
    # library and a way in the image does not need.
    "--without-pam", "--without-selinux", "--without-kerberos5", "--without-libedit",
    "--without-xauth", "--disable-pkcs11", "--without-security-key-builtin",
    # (--with-tcp-wrappers, --with-systemd, --with-audit=linux are Debian's; left out, they are off.)
    # No /etc/shadow in the image: the keel account's `*` in /etc/passwd is all there is.
    "--without-shadow",
    # No login records: musl's utmp functions do nothing, and nothing in the image reads them.
    "--disable-utmp", "--disable-utmpx", "--disable-wtmp", "--disable-wtmpx", "--disable-lastlog",
    # PATH for commands run without a login shell (ssh keel@host keel service list).
    "--with-default-path=/usr/bin:/bin:/usr/sbin:/sbin",
    "--with-superuser-path=/usr/bin:/bin:/usr/sbin:/sbin",
    # The pre-authentication child's system calls limited by a seccomp filter, as Debian's.
    "--with-sandbox=seccomp_filter",
    "--disable-strip",  # stripped here, once
    "ac_cv_func_mkdtemp=no",  # OpenSSH's own mkdtemp, as Debian (bugs.debian.org/1001186)
]
OPENSSH_CFLAGS = "-Os -ffunction-sections -fdata-sections"
OPENSSH_LDFLAGS = "-Wl,--gc-sections"
OPENSSH_PROGRAMS = {
    "usr/sbin/sshd": "sshd",
    "usr/bin/ssh-keygen": "ssh-keygen",               # host keys, fingerprints (keel-sshd)
    "usr/lib/openssh/sftp-server": "sftp-server",     # scp and sftp (scp speaks SFTP since 9.0)
}
# Debian's musl-dev has no crypt(). sshd calls it only to check a password, and it accepts no
# passwords (sshd_config: PasswordAuthentication no, KbdInteractiveAuthentication no): a
# crypt() that always fails makes any password check fail, as it should.
OPENSSH_NO_CRYPT = """\
#include <errno.h>
#include <stddef.h>
/* scripts/build-image: musl-dev has no crypt(); sshd accepts no passwords. */
char *crypt(const char *key, const char *salt) { (void)key; (void)salt; errno = ENOSYS; return NULL; }
"""


def musl_static_pie_specs(dest):
    """A copy of musl-gcc's gcc specs that can also link -static-pie (musl's rcrt1.o, which
    relocates the program itself, and no dynamic linker): the binaries are static and still
    load at a random address, and sshd re-executes itself for every connection, so each gets
    its own layout. Returns the gcc to run with it."""
    wrapper = Path(shutil.which("musl-gcc")).read_text()
    specs = re.search(r'-specs\s+"?([^"\s]+)', wrapper)
    gcc = re.search(r'\$\{REALGCC:-([^}]+)\}', wrapper)
    if not specs or not gcc:
        die("musl-gcc: cannot find its gcc and specs file")
    text = Path(specs.group(1)).read_text()
    libdir = Path(specs.group(1)).parent
    start = f"%{{!shared: {libdir}/Scrt1.o}}"
    link = "%{static:-static}"
    if start not in text or link not in text or not (libdir / "rcrt1.o").exists():
        die(f"{specs.group(1)}: not the musl-gcc specs this script knows (startfile, link)")
    text = text.replace(start, f"%{{!shared:%{{static-pie:{libdir}/rcrt1.o;:{libdir}/Scrt1.o}}}}")
    text = text.replace(link, link + " %{static-pie:-static -pie --no-dynamic-linker -z text}")
    dest.write_text(text)
    return gcc.group(1)


def kernel_headers(dest):
    """linux/, asm/ and asm-generic/ from the build host's kernel headers (linux-libc-dev) in a
    directory of their own: musl-gcc sees no /usr/include, and the seccomp sandbox needs
    <linux/seccomp.h> and <linux/filter.h>."""
    multiarch = run(["gcc", "-print-multiarch"]).strip()
    dest.mkdir()
    for name, src in [("linux", "/usr/include/linux"), ("asm-generic", "/usr/include/asm-generic"),
                      ("asm", f"/usr/include/{multiarch}/asm")]:
        if not Path(src).is_dir():
            die(f"no {src} (linux-libc-dev) for OpenSSH's seccomp sandbox")
        (dest / name).symlink_to(src)



def build(cache):
    """sshd, ssh-keygen and sftp-server from Debian's OpenSSH source (cached)."""
    built = cache / "openssh-build"
    memo = cache / "openssh-source-candidate.json"
    found = apt_candidates(["openssh-server"], memo)
    if found is None and not list(built.glob("*/.built")):
        log("no openssh-server candidate in the package lists: apt-get update")
        run(["apt-get", "update", "-q"])
        found = apt_candidates(["openssh-server"], memo)
    if found is None:
        stamps = sorted(built.glob("*/.built"), key=lambda p: p.stat().st_mtime)
        if not stamps:
            die("cannot resolve openssh-server in the package lists (apt-cache policy)")
        version = json.loads(stamps[-1].read_text())["version"]
        log(f"package lists unavailable: using the cached OpenSSH {version}")
        return package(version, {rel: stamps[-1].parent / name for rel, name in OPENSSH_PROGRAMS.items()})
    # openssh-server's version is its source package's (openssh): one source, one version.
    version = found["openssh-server"]

    musl = ensure_musl()
    gcc_version = run(["gcc", "-dumpfullversion"]).strip()
    key = hashlib.sha256(json.dumps([version, musl, gcc_version, OPENSSH_CONFIGURE, OPENSSH_CFLAGS,
                                     OPENSSH_LDFLAGS, OPENSSH_NO_CRYPT, sorted(OPENSSH_PROGRAMS.values())],
                                    sort_keys=True).encode()).hexdigest()[:16]
    out = built / key
    files = {rel: out / name for rel, name in OPENSSH_PROGRAMS.items()}
    if (out / ".built").exists():
        return package(version, files)

    dsc = fetch_source("openssh", version, cache)
    log(f"building sshd, ssh-keygen, sftp-server from OpenSSH {version} (musl, static, no OpenSSL)")
    with tempfile.TemporaryDirectory(dir=cache) as tmp:
        tmp = Path(tmp)
        src = tmp / "openssh"
        run(["dpkg-source", "--no-check", "-x", dsc, src])  # hashes were checked by apt
        # Debian's patches change configure.ac, and Debian runs autoreconf. The three changes
        # there (gssapi, restore-tcp-wrappers, systemd-readiness) only add options that this
        # build leaves off, so the shipped configure is the same build: mark it up to date.
        os.utime(src / "configure")
        gcc = musl_static_pie_specs(tmp / "musl-static-pie.specs")
        kernel_headers(tmp / "kernel-headers")
        (tmp / "no-crypt.c").write_text(OPENSSH_NO_CRYPT)
        run(["musl-gcc", "-Os", "-c", tmp / "no-crypt.c", "-o", tmp / "no-crypt.o"])
        run(["./configure", f"CC={gcc} -specs {tmp / 'musl-static-pie.specs'}",
             f"CFLAGS={OPENSSH_CFLAGS} -I{tmp / 'kernel-headers'}", f"LDFLAGS={OPENSSH_LDFLAGS}",
             f"LIBS={tmp / 'no-crypt.o'}",
             # after configure's hardening flags, whose -pie would otherwise win
             "--with-ldflags-after=-static-pie", *OPENSSH_CONFIGURE], cwd=src)
        config_h = (src / "config.h").read_text()
        for define, want in [("WITH_OPENSSL", False), ("WITH_ZLIB", False), ("USE_PAM", False),
                             ("SANDBOX_SECCOMP_FILTER", True)]:
            if bool(re.search(rf"^#define {define}\b", config_h, re.M)) != want:
                die(f"OpenSSH {version}: configure {'did not define' if want else 'defined'} {define}")
        run(["make", f"-j{os.cpu_count() or 2}", *OPENSSH_PROGRAMS.values()], cwd=src)
        shutil.rmtree(out, ignore_errors=True)
        out.mkdir(parents=True)
        for name in OPENSSH_PROGRAMS.values():
            run(["strip", "--strip-all", "-o", out / name, src / name])
            # static: no program interpreter, no shared library
            headers = run(["readelf", "-ldW", out / name])
            if re.search(r"\bINTERP\b|\(NEEDED\)", headers):
                die(f"OpenSSH {version}: {name} is not static:\n{headers}")
        (out / ".built").write_text(json.dumps({"version": version, "musl": musl, "gcc": gcc_version}))
    return package(version, files)


def package(version, files):
    return Package(version, files, f"OpenSSH {version} from Debian's source, no OpenSSL, musl, static")


