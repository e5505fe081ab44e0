// The control protocol between keeld and the CLI: one JSON object per line over a unix stream
// socket, a version handshake first (dinit's QUERYVERSION idea): the client says its version,
// the server answers with its own and the oldest client it still speaks to. New features get
// new commands; an old client gets a clear "too old" instead of a misunderstanding.
#pragma once

#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "common/error.h"
#include "common/fd.h"

namespace keel::keeld::protocol {

constexpr int kVersion = 1;
constexpr int kMinVersion = 1;
constexpr size_t kMaxMessage = 64 * 1024; // a longer line is an error, and closes the connection

std::string socket_path(const std::string& instance); // /run/keel/<instance>.sock

// Buffered line reader over a socket fd: returns one message, EOF, or an error.
class LineReader {
  public:
    explicit LineReader(int fd) : fd_(fd) {}
    // Reads what is available (non-blocking fds) or blocks (blocking fds). Returns
    //  1 when a full line is in `line`, 0 when more data is needed (non-blocking), -1 on EOF,
    //  -2 when the line exceeds kMaxMessage, -3 on a read error.
    int next(std::string& line);
    // A descriptor that came with the messages read so far (SCM_RIGHTS), oldest first.
    Fd take_fd();

  private:
    int fd_;
    std::string buf_;
    std::vector<Fd> fds_;
};

// One line from a client as a request: a JSON object, or the error keeld replies before it
// closes the connection. Never throws: this is keeld's loop.
Result<nlohmann::json> parse_request(const std::string& line) noexcept;
// The first request of a connection: {"hello": "keel", "version": N} with N >= kMinVersion. A
// field of the wrong type is an error like a missing one, never an exception.
Status check_hello(const nlohmann::json& req) noexcept;

// Writes one message (adds the newline); false on error. With `pass_fd` >= 0 that descriptor
// travels with the message's first byte (SCM_RIGHTS): `keel image import` hands keeld the open
// archive, which may live in a mount namespace keeld cannot see.
bool send(int fd, const nlohmann::json& msg, int pass_fd = -1);

// Client side: connects, handshakes, returns the fd. Errors: "keeld is not running (no socket
// at /run/keel/system.sock)", "permission denied", "keeld speaks protocol N..".
Result<int> connect(const std::string& path);
// One request, one reply.
// With `received`, a descriptor keeld sent with its reply lands there (the pty master of
// `keel run -it`).
Result<nlohmann::json> request(int fd, const nlohmann::json& req, int pass_fd = -1,
                               Fd* received = nullptr);

} // namespace keel::keeld::protocol
