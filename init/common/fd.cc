#include "common/fd.h"

#include <cerrno>
#include <fcntl.h>
#include <linux/openat2.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <cstring>
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

Fd open_at2(int dirfd, const char* path, int flags, uint64_t resolve) {
    open_how how{};
    how.flags = static_cast<uint64_t>(flags | O_CLOEXEC);
    how.resolve = resolve;
    long r;
    // EAGAIN: a rename or mount raced a '..' in the walk (RESOLVE_BENEATH/IN_ROOT); try again.
    do
        r = ::syscall(SYS_openat2, dirfd, path, &how, sizeof how);
    while (r < 0 && (errno == EINTR || errno == EAGAIN));
    return Fd(r < 0 ? -1 : static_cast<int>(r));
}

Status read_file_in_root(const std::string& root, const std::string& path, std::string& out,
                         size_t max) {
    out.clear();
    std::string what = "read " + root + path;
    Fd dir(::open(root.c_str(), O_PATH | O_DIRECTORY | O_CLOEXEC));
    if (!dir) return sys_error("open " + root);
    // O_NONBLOCK: opening a FIFO does not wait for a writer; fstat then refuses it.
    Fd fd = open_at2(dir.get(), path.c_str(), O_RDONLY | O_NONBLOCK | O_NOCTTY,
                     RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS);
    if (!fd) return sys_error(what);
    struct stat st {};
    if (::fstat(fd.get(), &st) < 0) return sys_error(what);
    if (!S_ISREG(st.st_mode)) return plain_error(what + ": not a regular file");
    char buf[8192];
    for (;;) {
        ssize_t n = ::read(fd.get(), buf, sizeof buf);
        if (n < 0 && errno == EINTR) continue;
        if (n < 0) return sys_error(what);
        if (n == 0) return {};
        if (out.size() + static_cast<size_t>(n) > max) {
            out.clear();
            return sys_error(what + " (larger than " + std::to_string(max >> 10) + " KiB)", EFBIG);
        }
        out.append(buf, static_cast<size_t>(n));
    }
}

bool write_file(const char* path, const std::string& data) {
    Fd fd(::open(path, O_WRONLY | O_CLOEXEC));
    if (!fd) return false;
    ssize_t n;
    do
        n = ::write(fd.get(), data.data(), data.size());
    while (n < 0 && errno == EINTR);
    return n == static_cast<ssize_t>(data.size());
}

bool write_file_atomic(const std::string& path, const std::string& data, unsigned mode,
                       Durability d) {
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

ssize_t send_with_fd(int sock, const void* data, size_t len, int fd) {
    iovec iov{const_cast<void*>(data), len};
    alignas(cmsghdr) char control[CMSG_SPACE(sizeof(int))] = {};
    msghdr mh{};
    mh.msg_iov = &iov;
    mh.msg_iovlen = 1;
    mh.msg_control = control;
    mh.msg_controllen = sizeof control;
    cmsghdr* cm = CMSG_FIRSTHDR(&mh);
    cm->cmsg_level = SOL_SOCKET;
    cm->cmsg_type = SCM_RIGHTS;
    cm->cmsg_len = CMSG_LEN(sizeof(int));
    std::memcpy(CMSG_DATA(cm), &fd, sizeof(int));
    ssize_t n;
    do
        n = ::sendmsg(sock, &mh, MSG_NOSIGNAL);
    while (n < 0 && errno == EINTR);
    return n;
}

ssize_t recv_with_fds(int sock, void* buf, size_t len, std::vector<Fd>& fds, size_t max_fds) {
    iovec iov{buf, len};
    alignas(cmsghdr) char control[CMSG_SPACE(4 * sizeof(int))];
    msghdr mh{};
    mh.msg_iov = &iov;
    mh.msg_iovlen = 1;
    mh.msg_control = control;
    mh.msg_controllen = sizeof control;
    ssize_t n = ::recvmsg(sock, &mh, MSG_CMSG_CLOEXEC);
    for (cmsghdr* cm = n > 0 ? CMSG_FIRSTHDR(&mh) : nullptr; cm; cm = CMSG_NXTHDR(&mh, cm)) {
        if (cm->cmsg_level != SOL_SOCKET || cm->cmsg_type != SCM_RIGHTS) continue;
        for (size_t i = 0; i < (cm->cmsg_len - CMSG_LEN(0)) / sizeof(int); i++) {
            int passed;
            std::memcpy(&passed, CMSG_DATA(cm) + i * sizeof(int), sizeof(int));
            Fd owned(passed);
            if (fds.size() < max_fds) fds.push_back(std::move(owned));
        }
    }
    return n;
}

} // namespace keel
