#include "image/layer.h"

#include <archive.h>
#include <archive_entry.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/xattr.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <initializer_list>
#include <utility>

#include "common/fd.h"
#include "common/strings.h"
#include "image/archive.h"
#include "image/digest.h"
#include "image/fs.h"

namespace keel::image {

namespace {

constexpr size_t kMaxNotes = 20;

enum class Compression { none, gzip, zstd };

// By content, not by media type: registries and tools disagree about media types, and a
// "tar+gzip" layer that is in fact plain tar is common.
Result<Compression> sniff_compression(const std::string& path) {
    Fd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
    if (!fd) return sys_error("open " + path);
    unsigned char m[6] = {};
    ssize_t n = ::pread(fd.get(), m, sizeof m, 0);
    if (n < 0) return sys_error("read " + path);
    auto is = [&](std::initializer_list<unsigned char> magic) {
        return static_cast<size_t>(n) >= magic.size() && std::equal(magic.begin(), magic.end(), m);
    };
    if (is({0x1f, 0x8b})) return Compression::gzip;
    if (is({0x28, 0xb5, 0x2f, 0xfd})) return Compression::zstd;
    if (is({0xfd, '7', 'z', 'X', 'Z', 0}))
        return plain_error("xz-compressed layer: not supported (plain tar, gzip or zstd)");
    if (is({'B', 'Z', 'h'}))
        return plain_error("bzip2-compressed layer: not supported (plain tar, gzip or zstd)");
    return Compression::none;
}

// The decompressed layer, pulled by the tar reader through a callback: every byte is hashed
// exactly once, in the same pass that unpacks it.
struct Stream {
    struct archive* raw = archive_read_new(); // the blob through its decompression filter
    Sha256 hash;
    int64_t size = 0;
    std::vector<char> buf = std::vector<char>(1 << 16);
    bool empty = false; // a zero-length blob: no data at all
    bool failed = false;
    Error error;

    ~Stream() { archive_read_free(raw); }

    Status open(const std::string& path, Compression c) {
        if (c == Compression::gzip) archive_read_support_filter_gzip(raw);
        if (c == Compression::zstd) archive_read_support_filter_zstd(raw);
        archive_read_support_format_raw(raw);
        if (archive_read_open_filename(raw, path.c_str(), 1 << 16) != ARCHIVE_OK)
            return archive_error(raw);
        archive_entry* e;
        int rc = archive_read_next_header(raw, &e);
        if (rc == ARCHIVE_EOF) empty = true;
        if (rc < ARCHIVE_WARN) return archive_error(raw);
        return {};
    }

    // Next chunk of the uncompressed stream; 0 at its end, -1 on error (kept in `error`).
    la_ssize_t next(const void** out) {
        if (empty) return 0;
        la_ssize_t n = archive_read_data(raw, buf.data(), buf.size());
        if (n < 0) {
            failed = true;
            error = archive_error(raw);
            return -1;
        }
        hash.update(buf.data(), static_cast<size_t>(n));
        size += n;
        *out = buf.data();
        return n;
    }

    // Whatever the tar reader left after the end-of-archive blocks still counts for the digest.
    Status drain() {
        const void* p;
        la_ssize_t n;
        while ((n = next(&p)) > 0) {
        }
        if (n < 0) return error;
        return {};
    }
};

la_ssize_t stream_read(struct archive*, void* client, const void** out) {
    return static_cast<Stream*>(client)->next(out);
}

struct TarReader {
    struct archive* a = archive_read_new();
    ~TarReader() { archive_read_free(a); }
};

struct DiskWriter {
    struct archive* a = archive_write_disk_new();
    ~DiskWriter() { archive_write_free(a); }
};

// overlayfs keeps its own metadata in trusted.overlay.* (or user.overlay.* with `userxattr`):
// redirects, metacopy, opaque marks. An image must not be able to forge them, so the entries'
// own copies are dropped; the opaque mark is written from the layer's `.wh..wh..opq` only.
void drop_overlay_xattrs(archive_entry* e) {
    struct Xattr {
        std::string name;
        std::string value;
    };
    std::vector<Xattr> keep;
    bool dropped = false;
    archive_entry_xattr_reset(e);
    const char* name;
    const void* value;
    size_t size;
    while (archive_entry_xattr_next(e, &name, &value, &size) == ARCHIVE_OK) {
        if (starts_with(name, "trusted.overlay.") || starts_with(name, "user.overlay.")) {
            dropped = true;
            continue;
        }
        keep.push_back({name, std::string(static_cast<const char*>(value), size)});
    }
    if (!dropped) return;
    archive_entry_xattr_clear(e);
    for (const auto& x : keep)
        archive_entry_xattr_add_entry(e, x.name.c_str(), x.value.data(), x.value.size());
}

std::pair<std::string, std::string> split_parent(const std::string& rel) {
    auto slash = rel.rfind('/');
    if (slash == std::string::npos) return {"", rel};
    return {rel.substr(0, slash), rel.substr(slash + 1)};
}

// `.wh.NAME`: NAME is deleted from the layers below. overlayfs reads a character device 0:0 as
// a whiteout; making one needs no CAP_MKNOD since Linux 5.8, in a user namespace too.
Status make_whiteout(int root_fd, const std::string& dir, const std::string& name) {
    auto d = open_dir_beneath(root_fd, dir, true);
    if (!d) return d.error();
    if (::mknodat(d->get(), name.c_str(), S_IFCHR | 0000, ::makedev(0, 0)) < 0) {
        // Something this layer itself put there wins: a whiteout hides only lower layers.
        if (errno == EEXIST) return {};
        return sys_error("whiteout " + (dir.empty() ? name : dir + "/" + name));
    }
    return {};
}

// `.wh..wh..opq`: the directory hides everything the layers below have in it. The user
// runtime mounts overlayfs inside a user namespace with `userxattr`, where overlayfs reads
// user.overlay.* and ignores trusted.overlay.*: user.overlay.opaque is the mark that counts.
// trusted.overlay.opaque is written too when the caller may (root on the host), for a mount
// without `userxattr`.
Status mark_opaque(int root_fd, const std::string& dir) {
    auto d = open_dir_beneath(root_fd, dir, true);
    if (!d) return d.error();
    if (::fsetxattr(d->get(), "user.overlay.opaque", "y", 1, 0) < 0)
        return sys_error("set user.overlay.opaque on " + (dir.empty() ? std::string("/") : dir));
    (void)::fsetxattr(d->get(), "trusted.overlay.opaque", "y", 1, 0);
    return {};
}

// A hard link may only point at something this layer already holds, reached without symlinks.
Status check_hardlink(int root_fd, const std::string& target) {
    if (target.empty()) return plain_error("hard link to the layer root");
    auto [dir, base] = split_parent(target);
    auto d = open_dir_beneath(root_fd, dir, false);
    if (!d) return wrap("hard link to '" + target + "'", d.error());
    struct stat st;
    if (::fstatat(d->get(), base.c_str(), &st, AT_SYMLINK_NOFOLLOW) < 0)
        return sys_error("hard link to '" + target + "'");
    if (S_ISDIR(st.st_mode)) return plain_error("hard link to directory '" + target + "'");
    return {};
}

class Unpacker {
  public:
    Unpacker(std::string dest, Stream& stream) : dest_(std::move(dest)), stream_(stream) {}

    Status run(LayerContent& out) {
        root_.reset(::open(dest_.c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC));
        if (!root_) return sys_error("open " + dest_);
        if (::fchmod(root_.get(), 0755) < 0) return sys_error("chmod " + dest_);

        archive_read_support_format_tar(tar_.a);
        if (archive_read_open(tar_.a, &stream_, nullptr, stream_read, nullptr) != ARCHIVE_OK)
            return read_error();

        int flags = ARCHIVE_EXTRACT_PERM | ARCHIVE_EXTRACT_TIME | ARCHIVE_EXTRACT_XATTR |
                    // Every entry's path is checked here first (no "..", not absolute) and then
                    // made absolute under the layer's directory (so libarchive's
                    // SECURE_NOABSOLUTEPATHS cannot be used: the absolute part is ours, and the
                    // store's root has no symlinks in it); libarchive then refuses to write
                    // through any symlink an earlier entry made.
                    ARCHIVE_EXTRACT_SECURE_SYMLINKS | ARCHIVE_EXTRACT_SECURE_NODOTDOT;
        // Without privileges, files belong to the caller; chown attempts would only fail.
        if (::geteuid() == 0)
            flags |= ARCHIVE_EXTRACT_OWNER;
        else
            note("not root: files belong to the caller, not to the uids the image names");
        // No archive_write_disk_set_standard_lookup: ids stay the image's numbers, never mapped
        // through this host's /etc/passwd.
        archive_write_disk_set_options(disk_.a, flags);

        for (;;) {
            archive_entry* e;
            int rc = archive_read_next_header(tar_.a, &e);
            if (rc == ARCHIVE_EOF) break;
            if (rc < ARCHIVE_WARN) return read_error();
            const char* raw = archive_entry_pathname(e);
            if (!raw) return plain_error("entry without a usable name");
            auto rel = clean_relative_path(raw);
            if (!rel) return wrap(std::string("entry '") + raw + "'", rel.error());
            if (rel->empty()) continue; // the layer's root directory itself
            if (auto st = entry(e, *rel); !st) return wrap("entry '" + *rel + "'", st.error());
        }
        for (const auto& dir : opaque_dirs_)
            KEEL_TRY(mark_opaque(root_.get(), dir));
        // Directory modes and times are set last (a 0555 directory is written into first).
        if (archive_write_close(disk_.a) < ARCHIVE_WARN) return archive_error(disk_.a);
        KEEL_TRY(stream_.drain());
        if (notes_ > kMaxNotes)
            out.notes.push_back("... and " + std::to_string(notes_ - kMaxNotes) + " more");
        out.notes.insert(out.notes.begin(), std::make_move_iterator(notes_list_.begin()),
                         std::make_move_iterator(notes_list_.end()));
        return {};
    }

  private:
    Status entry(archive_entry* e, const std::string& rel) {
        auto [dir, base] = split_parent(rel);
        if (starts_with(base, ".wh.")) {
            if (base == ".wh..wh..opq") {
                opaque_dirs_.push_back(dir);
                return {};
            }
            std::string name = base.substr(4);
            if (name.empty() || name == "." || name == "..") return plain_error("invalid whiteout");
            return make_whiteout(root_.get(), dir, name);
        }
        if (const char* hl = archive_entry_hardlink(e)) {
            auto target = clean_relative_path(hl);
            if (!target) return wrap(std::string("hard link to '") + hl + "'", target.error());
            KEEL_TRY(check_hardlink(root_.get(), *target));
            archive_entry_set_hardlink(e, (dest_ + "/" + *target).c_str());
        }
        drop_overlay_xattrs(e);
        archive_entry_set_pathname(e, (dest_ + "/" + rel).c_str());

        auto type = archive_entry_filetype(e);
        int rc = archive_write_header(disk_.a, e);
        if (rc < ARCHIVE_WARN) {
            bool device = type == AE_IFCHR || type == AE_IFBLK;
            if (device && rc == ARCHIVE_FAILED) {
                // Creating device nodes needs CAP_MKNOD in the initial user namespace; the
                // runtime gives containers their /dev anyway.
                note("skipped device node " + rel + ": " + disk_message());
                return {};
            }
            return plain_error(disk_message());
        }
        if (rc == ARCHIVE_WARN) note(rel + ": " + disk_message());
        if (archive_entry_size(e) > 0) {
            const void* block;
            size_t size;
            la_int64_t offset;
            for (;;) {
                int r = archive_read_data_block(tar_.a, &block, &size, &offset);
                if (r == ARCHIVE_EOF) break;
                if (r < ARCHIVE_WARN) return read_error();
                if (archive_write_data_block(disk_.a, block, size, offset) < ARCHIVE_WARN)
                    return archive_error(disk_.a);
            }
        }
        rc = archive_write_finish_entry(disk_.a);
        if (rc < ARCHIVE_WARN) return plain_error(disk_message());
        if (rc == ARCHIVE_WARN) note(rel + ": " + disk_message());
        return {};
    }

    Error read_error() { return stream_.failed ? stream_.error : archive_error(tar_.a); }

    std::string disk_message() {
        const char* m = archive_error_string(disk_.a);
        std::string text = m ? m : "write failed";
        // libarchive names the absolute path; the layer-relative one is what means something.
        if (auto pos = text.find(dest_ + "/"); pos != std::string::npos)
            text.erase(pos, dest_.size() + 1);
        if (int err = archive_errno(disk_.a);
            err > 0 && text.find(std::strerror(err)) == std::string::npos)
            text += ": " + errno_name(err);
        return text;
    }

    void note(std::string text) {
        if (++notes_ <= kMaxNotes) notes_list_.push_back(std::move(text));
    }

    std::string dest_;
    Stream& stream_;
    Fd root_;
    TarReader tar_;
    DiskWriter disk_;
    std::vector<std::string> opaque_dirs_;
    std::vector<std::string> notes_list_;
    size_t notes_ = 0;
};

} // namespace

Result<LayerContent> unpack_layer(const std::string& blob_path, const std::string& dest) {
    auto compression = sniff_compression(blob_path);
    if (!compression) return compression.error();
    Stream stream;
    KEEL_TRY(stream.open(blob_path, *compression));
    LayerContent out;
    if (dest.empty()) {
        KEEL_TRY(stream.drain());
    } else {
        Unpacker u(dest, stream);
        KEEL_TRY(u.run(out));
    }
    out.diff_id = stream.hash.hex();
    out.size = stream.size;
    return out;
}

} // namespace keel::image
