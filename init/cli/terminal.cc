#include "cli/terminal.h"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdlib.h>
#include <sys/ioctl.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <cstring>

namespace keel::cli {

Status send_console(const std::string& socket_path, int master) {
    Fd sock(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
    if (!sock) return sys_error("socket");
    sockaddr_un addr{};
    addr.sun_family = AF_UNIX;
    if (socket_path.size() >= sizeof addr.sun_path)
        return plain_error("console socket path too long: " + socket_path);
    std::memcpy(addr.sun_path, socket_path.c_str(), socket_path.size() + 1);
    if (::connect(sock.get(), reinterpret_cast<sockaddr*>(&addr), sizeof addr) < 0)
        return sys_error("connect console socket " + socket_path);
    char name[] = "/dev/ptmx";
    if (send_with_fd(sock.get(), name, sizeof name - 1, master) < 0)
        return sys_error("send console to " + socket_path);
    return {};
}

void copy_window_size(int from, int to) noexcept {
    winsize ws{};
    if (::ioctl(from, TIOCGWINSZ, &ws) == 0) ::ioctl(to, TIOCSWINSZ, &ws);
}

RawMode::RawMode(int fd) : fd_(fd) {
    if (!::isatty(fd) || ::tcgetattr(fd, &saved_) < 0) return;
    termios raw = saved_;
    ::cfmakeraw(&raw);
    active_ = ::tcsetattr(fd, TCSANOW, &raw) == 0;
}

RawMode::~RawMode() {
    if (active_) ::tcsetattr(fd_, TCSANOW, &saved_);
}

void proxy_terminal(int master) noexcept {
    sigset_t winch;
    sigemptyset(&winch);
    sigaddset(&winch, SIGWINCH);
    ::sigprocmask(SIG_BLOCK, &winch, nullptr);
    Fd sigfd(::signalfd(-1, &winch, SFD_CLOEXEC | SFD_NONBLOCK));
    RawMode raw(0);
    copy_window_size(0, master);
    bool stdin_open = true;
    char buf[8192];
    for (;;) {
        pollfd fds[3] = {
            {master, POLLIN, 0}, {stdin_open ? 0 : -1, POLLIN, 0}, {sigfd.get(), POLLIN, 0}};
        if (::poll(fds, 3, -1) < 0) {
            if (errno == EINTR) continue;
            break;
        }
        if (fds[2].revents & POLLIN) {
            signalfd_siginfo si{};
            while (::read(sigfd.get(), &si, sizeof si) == sizeof si)
                copy_window_size(0, master);
        }
        if (fds[0].revents & (POLLIN | POLLHUP | POLLERR)) {
            // EIO: every slave is closed, the process (and whatever it started) is gone.
            ssize_t n = ::read(master, buf, sizeof buf);
            if (n <= 0) break;
            (void)!::write(1, buf, size_t(n));
        }
        if (fds[1].revents & (POLLIN | POLLHUP | POLLERR)) {
            ssize_t n = ::read(0, buf, sizeof buf);
            if (n <= 0)
                stdin_open = false; // EOF: the terminal's own ^D reaches the process
            else
                (void)!::write(master, buf, size_t(n));
        }
    }
}

} // namespace keel::cli
