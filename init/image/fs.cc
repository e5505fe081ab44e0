#include "image/fs.h"

#include <dirent.h>
#include <fcntl.h>
#include <linux/openat2.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <cerrno>

#include "common/strings.h"

namespace keel::image {

Status make_dirs(const std::string& path, mode_t mode) {
    if (path.empty() || path[0] != '/')
        return plain_error("make_dirs: not an absolute path: " + path);
    for (size_t pos = 1; pos != std::string::npos;) {
        pos = path.find('/', pos);
        std::string cur = path.substr(0, pos);
        if (pos != std::string::npos) pos++;
        if (::mkdir(cur.c_str(), mode) < 0 && errno != EEXIST) return sys_error("mkdir " + cur);
    }
    return {};
}

static Status remove_entries(int dirfd, const std::string& shown);

static Status remove_at(int dirfd, const char* name, const std::string& shown) {
    if (::unlinkat(dirfd, name, 0) == 0 || errno == ENOENT) return {};
    if (errno != EISDIR) return sys_error("unlink " + shown);
    Fd sub(::openat(dirfd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC));
    if (!sub) return sys_error("open " + shown);
    KEEL_TRY(remove_entries(sub.get(), shown));
    sub.reset();
    if (::unlinkat(dirfd, name, AT_REMOVEDIR) < 0 && errno != ENOENT)
        return sys_error("rmdir " + shown);
    return {};
}

static Status remove_entries(int dirfd, const std::string& shown) {
    for (int attempt = 0; attempt < 2; attempt++) {
        int dupfd = ::fcntl(dirfd, F_DUPFD_CLOEXEC, 0);
        if (dupfd < 0) return sys_error("dup " + shown);
        DIR* d = ::fdopendir(dupfd);
        if (!d) {
            ::close(dupfd);
            return sys_error("opendir " + shown);
        }
        std::vector<std::string> names;
        while (dirent* e = ::readdir(d)) {
            std::string n = e->d_name;
            if (n != "." && n != "..") names.push_back(std::move(n));
        }
        ::closedir(d);
        Status st;
        for (const auto& n : names) {
            st = remove_at(dirfd, n.c_str(), shown + "/" + n);
            if (!st) break;
        }
        if (st) return {};
        // A directory without write permission for its owner: make it writable and retry once.
        if (attempt == 0 && (st.error().code == EACCES || st.error().code == EPERM) &&
            ::fchmod(dirfd, 0700) == 0)
            continue;
        return st;
    }
    return {};
}

Status remove_tree(const std::string& path) {
    auto slash = path.rfind('/');
    std::string parent = slash == std::string::npos ? "."
                         : slash == 0               ? "/"
                                                    : path.substr(0, slash);
    std::string name = slash == std::string::npos ? path : path.substr(slash + 1);
    Fd dir(::open(parent.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
    if (!dir) return errno == ENOENT ? Status{} : sys_error("open " + parent);
    return remove_at(dir.get(), name.c_str(), path);
}

Result<std::string> clean_relative_path(std::string_view name) {
    if (!name.empty() && name[0] == '/') return plain_error("absolute path");
    std::string out;
    for (const auto& part : split(name, '/')) {
        if (part.empty() || part == ".") continue;
        if (part == "..") return plain_error("path leaves the image (..)");
        out += (out.empty() ? "" : "/") + part;
    }
    return out;
}

Result<std::vector<std::string>> list_dir(const std::string& path) {
    DIR* d = ::opendir(path.c_str());
    if (!d) return sys_error("opendir " + path);
    std::vector<std::string> names;
    while (dirent* e = ::readdir(d)) {
        std::string n = e->d_name;
        if (n != "." && n != "..") names.push_back(std::move(n));
    }
    ::closedir(d);
    return names;
}

static int openat2_strict(int dirfd, const char* rel, int flags) {
    return open_at2(dirfd, rel, flags | O_NOFOLLOW,
                    RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS | RESOLVE_NO_MAGICLINKS)
        .release();
}

Result<Fd> open_dir_beneath(int root_fd, const std::string& rel, bool create) {
    Fd cur(openat2_strict(root_fd, ".", O_RDONLY | O_DIRECTORY));
    if (!cur) return sys_error("open layer root");
    std::string done;
    for (const auto& part : split(rel, '/')) {
        if (part.empty() || part == ".") continue;
        done += (done.empty() ? "" : "/") + part;
        if (part == "..") return plain_error(done + ": path leaves the layer");
        Fd next(openat2_strict(cur.get(), part.c_str(), O_RDONLY | O_DIRECTORY));
        if (!next && errno == ENOENT && create) {
            if (::mkdirat(cur.get(), part.c_str(), 0755) < 0 && errno != EEXIST)
                return sys_error("mkdir " + done);
            next.reset(openat2_strict(cur.get(), part.c_str(), O_RDONLY | O_DIRECTORY));
        }
        if (!next) {
            if (errno == ELOOP || errno == EXDEV)
                return sys_error(done + ": symlink in the path", errno);
            return sys_error("open " + done);
        }
        cur = std::move(next);
    }
    return cur;
}

} // namespace keel::image
