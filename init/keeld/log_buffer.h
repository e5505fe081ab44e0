// A service's output: the last lines in memory (for `keel service status|logs`) and a
// size-capped file on the state partition, rotated once (NAME.log, NAME.log.1).
#pragma once

#include <cstdint>
#include <deque>
#include <string>
#include <vector>

#include "common/fd.h"

namespace keel::keeld {

class LogBuffer {
  public:
    // `rate`: bytes a second kept from the pipe, with up to `rate` at once; more is dropped.
    LogBuffer(std::string file, size_t max_lines = 500, size_t max_file = 1 << 20,
              size_t rate = 1 << 20)
        : file_(std::move(file)), max_lines_(max_lines), max_file_(max_file), rate_(rate),
          tokens_(double(rate)) {}
    // Raw bytes from the service's pipe, read at `now_ms` (a monotonic clock). False when some
    // of them came over the rate and were dropped: the caller should read less for a while.
    bool append(const char* data, size_t n, int64_t now_ms) noexcept;
    void note(const std::string& line) noexcept; // keeld's own line ("started", "exited")
    // Says in the log how much was dropped since it last said so (at the end of a run).
    void flush_dropped() noexcept;
    uint64_t dropped_total() const { return dropped_total_; }
    std::vector<std::string> tail(size_t n) const;
    // Lines after number `seq` (lines are numbered from 1 as they arrive), at most the ones
    // still held; `next` is what to ask for next time (`keel service logs -f`).
    std::vector<std::string> since(uint64_t seq, uint64_t& next) const;
    uint64_t last_seq() const { return seq_; }

  private:
    void add_line(const std::string& line) noexcept;
    void write_out() noexcept; // the lines added since the last call, in one write
    std::string file_;
    size_t max_lines_, max_file_, rate_;
    std::deque<std::string> lines_;
    std::string partial_;
    uint64_t seq_ = 0; // number of the newest line
    // The file stays open between writes; its size is counted here for the rotation.
    Fd fd_;
    size_t file_size_ = 0;
    std::string out_;
    // Token bucket for the rate; bytes dropped since the log last said so.
    double tokens_;
    int64_t refilled_ms_ = -1;
    uint64_t dropped_ = 0, dropped_total_ = 0;
    int64_t dropped_said_ms_ = -1;
};

} // namespace keel::keeld
