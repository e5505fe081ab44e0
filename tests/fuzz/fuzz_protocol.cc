// The control protocol as keeld reads a client: bytes arrive on a socket in pieces, LineReader
// cuts them into messages (with the length limit), and each line becomes a request, the first
// one checked as the handshake.
#include <sys/socket.h>

#include "fuzz_util.h"
#include "keeld/protocol.h"

using namespace keel;
using namespace keel::keeld;

namespace {

void handle_line(const std::string& line, bool& handshaken) {
    if (line.size() > protocol::kMaxMessage + 4096)
        fuzz::violated("LineReader returned a line over kMaxMessage");
    auto req = protocol::parse_request(line);
    if (!req) return;
    if (!req->is_object()) fuzz::violated("parse_request accepted a non-object");
    if (!handshaken) {
        handshaken = bool(protocol::check_hello(*req));
        return;
    }
    // What keeld does with every reply: a dump that never throws on invalid UTF-8.
    (void)req->dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
}

} // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    int sv[2];
    if (::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0, sv) < 0)
        fuzz::violated("socketpair");
    Fd writer(sv[0]), reader_fd(sv[1]);
    protocol::LineReader reader(reader_fd.get());
    // The first byte picks the size of the pieces the client writes: lines split across
    // reads are the reader's business.
    size_t piece = size ? 1 + data[0] % 64 : 1;
    size_t off = size ? 1 : 0;
    bool handshaken = false, eof = false;
    std::string line;
    while (!eof) {
        if (off < size) {
            ssize_t n = ::send(writer.get(), data + off, std::min(piece, size - off), MSG_NOSIGNAL);
            if (n > 0) off += static_cast<size_t>(n);
            if (off == size) ::shutdown(writer.get(), SHUT_WR);
        } else if (size <= 1) {
            ::shutdown(writer.get(), SHUT_WR);
        }
        for (;;) {
            int rc = reader.next(line);
            if (rc == 1) {
                handle_line(line, handshaken);
                continue;
            }
            if (rc == 0) break; // more data needed
            eof = true;         // EOF, oversized line, or a read error
            if (rc == -3) fuzz::violated("read error on a socketpair");
            break;
        }
    }
    return 0;
}
