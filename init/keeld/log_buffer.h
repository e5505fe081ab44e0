// A service's output: the last lines in memory (for `keel service status|logs`) and a
// size-capped file on the state partition, rotated once (NAME.log, NAME.log.1).
#pragma once

#include <cstdint>
#include <deque>
#include <string>
#include <vector>

namespace keel::keeld {

class LogBuffer {
  public:
    LogBuffer(std::string file, size_t max_lines = 500, size_t max_file = 1 << 20)
        : file_(std::move(file)), max_lines_(max_lines), max_file_(max_file) {}
    void append(const char* data, size_t n) noexcept; // raw bytes from the service's pipe
    void note(const std::string& line) noexcept;      // keeld's own line ("started", "exited")
    std::vector<std::string> tail(size_t n) const;
    // Lines after number `seq` (lines are numbered from 1 as they arrive), at most the ones
    // still held; `next` is what to ask for next time (`keel service logs -f`).
    std::vector<std::string> since(uint64_t seq, uint64_t& next) const;
    uint64_t last_seq() const { return seq_; }

  private:
    void add_line(const std::string& line) noexcept;
    std::string file_;
    size_t max_lines_, max_file_;
    std::deque<std::string> lines_;
    std::string partial_;
    uint64_t seq_ = 0; // number of the newest line
};

} // namespace keel::keeld
