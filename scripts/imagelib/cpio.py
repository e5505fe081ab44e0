"""The initramfs archives: reproducible cpio "newc" archives of a tree, zstd-compressed."""

import os
import stat
import subprocess

from imagelib.util import EPOCH, die

ZSTD = ["zstd", "-q", "-19", "-T0"]


def cpio_newc(tree, paths, extra_nodes=()):
    """A cpio "newc" archive of tree's paths (relative, sorted), owned by root, every mtime
    EPOCH, inode numbers in order: byte-identical for identical trees. extra_nodes are
    (name, mode, rdev_major, rdev_minor) device nodes that need no mknod in the tree.

    Hard links in the tree stay hard links: every name of one file gets the same inode number
    and the link count, and only the first carries the data (the kernel's unpacker links the
    later names to the first and writes nothing for a size of 0; GNU cpio handles it too)."""
    out = bytearray()

    # (st_dev, st_ino) of files with several names in this archive -> [inode number, names]
    links = {}
    for rel in paths:
        st = (tree / rel).lstat()
        if stat.S_ISREG(st.st_mode) and st.st_nlink > 1:
            links.setdefault((st.st_dev, st.st_ino), [None, 0])[1] += 1

    def entry(name, mode, nlink, data=b"", rmaj=0, rmin=0, ino=None):
        ino = ino or len(entries) + 1
        entries.append(name)
        fields = [ino, mode, 0, 0, nlink, EPOCH, len(data), 0, 0, rmaj, rmin, len(name) + 1, 0]
        out.extend(b"070701" + b"".join(b"%08X" % f for f in fields))
        out.extend(name.encode() + b"\0")
        out.extend(b"\0" * (-len(out) % 4))
        out.extend(data)
        out.extend(b"\0" * (-len(out) % 4))

    entries = []
    for rel in paths:
        p = tree / rel
        st = p.lstat()
        if stat.S_ISLNK(st.st_mode):
            entry(rel, st.st_mode, 1, os.readlink(p).encode())
        elif stat.S_ISDIR(st.st_mode):
            entry(rel, st.st_mode, 2)
        elif stat.S_ISREG(st.st_mode) and (st.st_dev, st.st_ino) in links:
            link = links[(st.st_dev, st.st_ino)]
            if link[0] is None:
                link[0] = len(entries) + 1
                entry(rel, st.st_mode, link[1], p.read_bytes())
            else:
                entry(rel, st.st_mode, link[1], ino=link[0])
        elif stat.S_ISREG(st.st_mode):
            entry(rel, st.st_mode, 1, p.read_bytes())
        else:
            die(f"{p}: not a file, directory or symlink")
    for name, mode, rmaj, rmin in extra_nodes:
        entry(name, mode, 1, rmaj=rmaj, rmin=rmin)
    entry("TRAILER!!!", 0, 1)
    return bytes(out)


def tree_paths(tree):
    return sorted(str(p.relative_to(tree)) for p in tree.rglob("*"))


def compress(data, dest):
    with open(dest, "wb") as f:
        subprocess.run(ZSTD + ["-c"], input=data, stdout=f, check=True)
    return dest.stat().st_size


def compressed_size(data):
    return len(subprocess.run(ZSTD + ["-c"], input=data, stdout=subprocess.PIPE, check=True).stdout)


