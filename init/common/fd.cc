#include "common/fd.h"

#include <cerrno>
#include <fcntl.h>
#include <unistd.h>

#include <string>

namespace keel {

void Fd::reset(int fd) noexcept {
    if (fd_ >= 0) ::close(fd_);
    fd_ = fd;
}

bool read_file(const char* path, std::string& out) {
    out.clear();
    Fd fd(::open(path, O_RDONLY | O_CLOEXEC));
    if (!fd) return false;
    char buf[4096];
    for (;;) {
        ssize_t n = ::read(fd.get(), buf, sizeof buf);
        if (n < 0) {
            if (errno == EINTR) continue;
            return false;
        }
        if (n == 0) return true;
        out.append(buf, static_cast<size_t>(n));
    }
}

bool write_file(const char* path, const std::string& data) {
    Fd fd(::open(path, O_WRONLY | O_CLOEXEC));
    if (!fd) return false;
    ssize_t n;
    do n = ::write(fd.get(), data.data(), data.size());
    while (n < 0 && errno == EINTR);
    return n == static_cast<ssize_t>(data.size());
}

bool write_file_atomic(const std::string& path, const std::string& data, unsigned mode, Durability d) {
    std::string tmp = path + ".tmp." + std::to_string(::getpid());
    Fd fd(::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, mode));
    if (!fd) return false;
    size_t done = 0;
    while (done < data.size()) {
        ssize_t n = ::write(fd.get(), data.data() + done, data.size() - done);
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0) {
            int e = errno;
            ::unlink(tmp.c_str());
            errno = e;
            return false;
        }
        done += static_cast<size_t>(n);
    }
    bool durable = d == Durability::durable;
    if ((durable && ::fsync(fd.get()) < 0) || ::rename(tmp.c_str(), path.c_str()) < 0) {
        int e = errno;
        ::unlink(tmp.c_str());
        errno = e;
        return false;
    }
    if (!durable) return true;
    auto slash = path.rfind('/');
    std::string dir = slash == std::string::npos ? "." : slash == 0 ? "/" : path.substr(0, slash);
    Fd dirfd(::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
    if (dirfd) ::fsync(dirfd.get());
    return true;
}

} // namespace keel
