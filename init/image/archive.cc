#include "image/archive.h"

#include <archive.h>
#include <archive_entry.h>
#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <vector>

#include "common/fd.h"
#include "common/strings.h"
#include "image/digest.h"
#include "image/fs.h"

namespace keel::image {

Error archive_error(struct archive* a) {
    const char* msg = archive_error_string(a);
    std::string text = msg ? msg : "unknown libarchive error";
    // libarchive says "Truncated tar archive", "truncated gzip input", "Truncated input file
    // (needed N bytes, only M available)" depending on the layer that ran out.
    if (text.find("runcated") != std::string::npos) return plain_error("truncated archive");
    if (text.find("Unrecognized archive format") != std::string::npos)
        return plain_error("not a tar archive");
    int err = archive_errno(a);
    // libarchive reports a malformed archive as EILSEQ (its ARCHIVE_ERRNO_FILE_FORMAT on
    // Linux) and its own misuse as -1: neither is a system error worth naming.
    return err > 0 && err != EILSEQ ? sys_error(text, err) : plain_error(text);
}

namespace {

struct ReadArchive {
    struct archive* a = archive_read_new();
    ~ReadArchive() { archive_read_free(a); }
};

bool write_all(int fd, const void* data, size_t n) {
    const char* p = static_cast<const char*>(data);
    while (n > 0) {
        ssize_t w = ::write(fd, p, n);
        if (w < 0 && errno == EINTR) continue;
        if (w <= 0) return false;
        p += w;
        n -= static_cast<size_t>(w);
    }
    return true;
}

// `target` as seen from the directory of member `from`, made an archive name; empty when it
// leaves the archive.
std::string resolve_link(const std::string& from, const std::string& target) {
    std::vector<std::string> parts;
    if (!target.empty() && target[0] != '/') {
        parts = split(from, '/');
        parts.pop_back();
    }
    for (const auto& p : split(target, '/')) {
        if (p.empty() || p == ".") continue;
        if (p == "..") {
            if (parts.empty()) return {};
            parts.pop_back();
        } else {
            parts.push_back(p);
        }
    }
    return join(parts, "/");
}

} // namespace

Result<ArchiveMembers> ArchiveMembers::unpack(const std::string& archive_path,
                                              const std::string& work_dir, int archive_fd) {
    ArchiveMembers out;
    ReadArchive r;
    // A saved image is often compressed as a whole (`docker save | gzip`).
    archive_read_support_filter_gzip(r.a);
    archive_read_support_filter_zstd(r.a);
    archive_read_support_format_tar(r.a);
    Fd in(archive_fd >= 0 ? ::fcntl(archive_fd, F_DUPFD_CLOEXEC, 0)
                          : ::open(archive_path.c_str(), O_RDONLY | O_CLOEXEC));
    if (!in) return sys_error("open");
    if (archive_fd >= 0) (void)::lseek(in.get(), 0, SEEK_SET);
    if (archive_read_open_fd(r.a, in.get(), 1 << 16) != ARCHIVE_OK) return archive_error(r.a);

    std::vector<char> buf(1 << 16);
    for (int index = 0;; index++) {
        archive_entry* e;
        int rc = archive_read_next_header(r.a, &e);
        if (rc == ARCHIVE_EOF) break;
        if (rc < ARCHIVE_WARN) return archive_error(r.a);
        const char* raw = archive_entry_pathname(e);
        if (!raw) continue;
        // Names only look things up, so a ".." here harms nothing; it just is no member we read.
        auto name = clean_relative_path(raw);
        if (!name || name->empty()) continue;
        if (const char* hl = archive_entry_hardlink(e)) {
            auto target = clean_relative_path(hl);
            if (target) out.links_[*name] = *target;
            continue;
        }
        if (archive_entry_filetype(e) == AE_IFLNK) {
            const char* target = archive_entry_symlink(e);
            out.links_[*name] = target ? resolve_link(*name, target) : std::string();
            continue;
        }
        if (archive_entry_filetype(e) != AE_IFREG) continue;

        Member m;
        m.file = work_dir + "/m" + std::to_string(index);
        Fd fd(::open(m.file.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600));
        if (!fd) return sys_error("create " + m.file);
        Sha256 h;
        for (;;) {
            la_ssize_t n = archive_read_data(r.a, buf.data(), buf.size());
            if (n == 0) break;
            if (n < 0) {
                Error err = archive_error(r.a);
                return err.message == "truncated archive" ? err : wrap(*name, err);
            }
            h.update(buf.data(), static_cast<size_t>(n));
            if (!write_all(fd.get(), buf.data(), static_cast<size_t>(n)))
                return sys_error("write " + m.file);
            m.size += n;
        }
        m.sha256 = h.hex();
        out.links_.erase(*name);
        out.files_[*name] = std::move(m);
    }
    return out;
}

const Member* ArchiveMembers::find(const std::string& name) const {
    auto clean = clean_relative_path(name);
    if (!clean) return nullptr;
    std::string cur = *clean;
    for (int hops = 0; hops < 16; hops++) {
        if (auto f = files_.find(cur); f != files_.end()) return &f->second;
        auto l = links_.find(cur);
        if (l == links_.end() || l->second.empty()) return nullptr;
        cur = l->second;
    }
    return nullptr;
}

Result<std::string> ArchiveMembers::read(const std::string& name, size_t limit) const {
    const Member* m = find(name);
    if (!m) return plain_error(name + ": missing");
    if (static_cast<size_t>(m->size) > limit)
        return plain_error(name + ": too large (" + std::to_string(m->size) + " bytes)");
    std::string text;
    if (!read_file(m->file.c_str(), text)) return sys_error("read " + m->file);
    return text;
}

} // namespace keel::image
