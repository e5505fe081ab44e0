#include "keeld/protocol.h"

#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <cstdint>
#include <cstring>

#include <fmt/format.h>

namespace keel::keeld::protocol {

std::string socket_path(const std::string& instance) {
    return "/run/keel/" + instance + ".sock";
}

int LineReader::next(std::string& line) {
    for (;;) {
        auto nl = buf_.find('\n');
        if (nl != std::string::npos) {
            line = buf_.substr(0, nl);
            buf_.erase(0, nl + 1);
            return 1;
        }
        if (buf_.size() > kMaxMessage) return -2;
        char tmp[4096];
        ssize_t n = recv_with_fds(fd_, tmp, sizeof tmp, fds_, 4);
        if (n == 0) return -1;
        if (n < 0) {
            if (errno == EINTR) continue;
            if (errno == EAGAIN) return 0;
            return -3;
        }
        buf_.append(tmp, static_cast<size_t>(n));
    }
}

Fd LineReader::take_fd() {
    if (fds_.empty()) return Fd();
    Fd f = std::move(fds_.front());
    fds_.erase(fds_.begin());
    return f;
}

Result<nlohmann::json> parse_request(const std::string& line) noexcept {
    try {
        auto req = nlohmann::json::parse(line, nullptr, false);
        if (req.is_discarded() || !req.is_object())
            return plain_error("malformed message: not a JSON object");
        return req;
    } catch (...) {
        return plain_error("out of memory");
    }
}

Status check_hello(const nlohmann::json& req) noexcept {
    try {
        const std::string shape = "handshake first: {\"hello\":\"keel\",\"version\":N}";
        if (!req.is_object() || !req.contains("hello")) return plain_error(shape);
        // No version at all is the oldest client there is.
        int64_t v = 0;
        if (auto it = req.find("version"); it != req.end()) {
            if (!it->is_number_integer()) return plain_error(shape);
            v = it->is_number_unsigned() ? INT64_MAX : it->get<int64_t>();
        }
        if (v < kMinVersion)
            return plain_error(
                fmt::format("client too old: protocol {} < {}; update keel", v, kMinVersion));
        return {};
    } catch (...) {
        return plain_error("out of memory");
    }
}

bool send(int fd, const nlohmann::json& msg, int pass_fd) {
    // Service output is bytes, not always UTF-8: invalid sequences become U+FFFD rather than an
    // exception that would cost the connection.
    std::string s = msg.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace) + "\n";
    size_t done = 0;
    if (pass_fd >= 0) {
        if (send_with_fd(fd, s.data(), 1, pass_fd) != 1) return false;
        done = 1;
    }
    while (done < s.size()) {
        ssize_t n = ::send(fd, s.data() + done, s.size() - done, MSG_NOSIGNAL);
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0) return false;
        done += static_cast<size_t>(n);
    }
    return true;
}

Result<int> connect(const std::string& path) {
    int fd = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0) return sys_error("socket");
    sockaddr_un addr{};
    addr.sun_family = AF_UNIX;
    std::strncpy(addr.sun_path, path.c_str(), sizeof addr.sun_path - 1);
    if (::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) < 0) {
        int e = errno;
        ::close(fd);
        if (e == ENOENT || e == ECONNREFUSED)
            return plain_error(fmt::format("keeld is not running (no daemon at {})", path));
        if (e == EACCES || e == EPERM)
            return plain_error(fmt::format("permission denied on {} (root only)", path));
        return sys_error("connect " + path, e);
    }
    auto hello = request(fd, {{"hello", "keel"}, {"version", kVersion}});
    if (!hello) {
        ::close(fd);
        return hello.error();
    }
    return fd;
}

Result<nlohmann::json> request(int fd, const nlohmann::json& req, int pass_fd, Fd* received) {
    if (!send(fd, req, pass_fd)) return sys_error("send to keeld");
    LineReader r(fd);
    std::string line;
    int rc = r.next(line);
    if (rc == -1) return plain_error("keeld closed the connection");
    if (rc != 1) return sys_error("read from keeld");
    if (received) *received = r.take_fd();
    auto reply = nlohmann::json::parse(line, nullptr, false);
    if (reply.is_discarded() || !reply.is_object())
        return plain_error("keeld sent a malformed reply");
    if (!reply.value("ok", false))
        return plain_error(reply.value("error", std::string("keeld refused the request")));
    return reply;
}

} // namespace keel::keeld::protocol
