// Owned file descriptor. Every fd the runtime opens is O_CLOEXEC and owned by one of these.
#pragma once

#include <cstdint>

#include <string>
#include <utility>
#include <vector>

#include "common/error.h"

namespace keel {

class Fd {
  public:
    Fd() = default;
    explicit Fd(int fd) : fd_(fd) {}
    Fd(const Fd&) = delete;
    Fd& operator=(const Fd&) = delete;
    Fd(Fd&& o) noexcept : fd_(std::exchange(o.fd_, -1)) {}
    Fd& operator=(Fd&& o) noexcept {
        if (this != &o) reset(std::exchange(o.fd_, -1));
        return *this;
    }
    ~Fd() { reset(); }

    int get() const { return fd_; }
    bool valid() const { return fd_ >= 0; }
    explicit operator bool() const { return valid(); }
    int release() { return std::exchange(fd_, -1); }
    void reset(int fd = -1) noexcept;

  private:
    int fd_ = -1;
};

// openat2(2): `path` opened relative to `dirfd` under the RESOLVE_* rules in `resolve`
// (O_CLOEXEC is always added; EINTR and EAGAIN are retried). Invalid, with errno set, on failure.
// The one place the raw syscall is made: every path a container can influence is opened through it.
Fd open_at2(int dirfd, const char* path, int flags, uint64_t resolve);

// Reads a whole small file; empty on error with errno set.
bool read_file(const char* path, std::string& out);
// Reads a file a container image provides (its /etc/passwd, /etc/group), as untrusted data:
// `path` is resolved inside `root` as if it were / (a link cannot lead out of it, a magic
// link is refused), only a regular file is read (a FIFO would block the caller, a device
// like /dev/zero would never end), and at most `max` bytes (a larger file is EFBIG). Errors
// name root + path.
Status read_file_in_root(const std::string& root, const std::string& path, std::string& out,
                         size_t max = size_t(1) << 20);
// Writes a string to an existing file (sysfs, procfs, cgroupfs) in one write(2).
bool write_file(const char* path, const std::string& data);
// Replaces `path` atomically: a temporary file beside it, then rename. Readers see the old
// content or the new, never a part. With `durable` the file and its directory are fsynced, so
// a crash loses nothing (configuration); runtime state on tmpfs does not need it.
enum class Durability { durable, volatile_ };
bool write_file_atomic(const std::string& path, const std::string& data, unsigned mode = 0644,
                       Durability d = Durability::durable);

// Unix sockets with descriptors attached (SCM_RIGHTS). send_with_fd sends `len` bytes with
// `fd` riding on the first (EINTR retried; returns what sendmsg returns). recv_with_fds reads
// up to `len` bytes; descriptors that came with them are appended to `fds` (close-on-exec), at
// most `max_fds` in all: extra ones are closed.
ssize_t send_with_fd(int sock, const void* data, size_t len, int fd);
ssize_t recv_with_fds(int sock, void* buf, size_t len, std::vector<Fd>& fds, size_t max_fds);

} // namespace keel
