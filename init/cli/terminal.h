// Terminals for containers with process.terminal: the container makes its own pty in its
// devpts (ContainerSpec::console); the master comes back to the caller, to be proxied by `run`
// and `keel run -it`, or handed to --console-socket by `create`, as runc does.
#pragma once

#include <termios.h>

#include <string>

#include "common/error.h"
#include "common/fd.h"

namespace keel::cli {

// Sends the pty master over a unix socket with SCM_RIGHTS.
Status send_console(const std::string& socket_path, int master);

// Copies the window size of `from` (our terminal) to `to` (the pty).
void copy_window_size(int from, int to) noexcept;

// Puts a terminal in raw mode for the life of the object, so keys reach the container as typed.
class RawMode {
  public:
    explicit RawMode(int fd);
    ~RawMode();
    RawMode(const RawMode&) = delete;
    RawMode& operator=(const RawMode&) = delete;

  private:
    int fd_;
    bool active_ = false;
    termios saved_{};
};

// Proxies our terminal to a pty master (raw mode, window size kept in step) until the other
// side is gone.
void proxy_terminal(int master) noexcept;

} // namespace keel::cli
