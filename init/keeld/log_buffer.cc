#include "keeld/log_buffer.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cstring>

namespace keel::keeld {

void LogBuffer::add_line(const std::string& line) noexcept {
    try {
        lines_.push_back(line);
        seq_++;
        while (lines_.size() > max_lines_)
            lines_.pop_front();
        if (!file_.empty()) (out_ += line) += '\n';
    } catch (...) {
    }
}

void LogBuffer::write_out() noexcept {
    if (out_.empty()) return;
    if (file_size_ > max_file_) {
        fd_.reset();
        ::rename(file_.c_str(), (file_ + ".1").c_str());
    }
    if (!fd_) {
        fd_.reset(
            ::open(file_.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC | O_NOFOLLOW, 0640));
        struct stat st {};
        file_size_ = fd_ && ::fstat(fd_.get(), &st) == 0 ? size_t(st.st_size) : 0;
    }
    if (fd_) {
        // A regular file on the state partition: the write completes or fails, it does not wait.
        ssize_t n = ::write(fd_.get(), out_.data(), out_.size());
        if (n > 0) file_size_ += size_t(n);
    }
    out_.clear();
}

bool LogBuffer::append(const char* data, size_t n, int64_t now_ms) noexcept {
    try {
        if (refilled_ms_ >= 0)
            tokens_ = std::min(double(rate_),
                               tokens_ + double(now_ms - refilled_ms_) * double(rate_) / 1000);
        refilled_ms_ = now_ms;
        size_t keep = std::min(n, size_t(tokens_));
        // Over the rate: the kept part ends at a line's end where it can.
        if (keep < n) {
            const void* nl = keep ? ::memrchr(data, '\n', keep) : nullptr;
            if (nl) keep = size_t(static_cast<const char*>(nl) - data) + 1;
        }
        tokens_ -= double(keep);
        if (dropped_ && keep && (dropped_said_ms_ < 0 || now_ms - dropped_said_ms_ >= 1000)) {
            flush_dropped();
            dropped_said_ms_ = now_ms;
        }
        partial_.append(data, keep);
        // A line ends at \n; a \r before it (sshd, programs that think they own a terminal) is
        // not part of it. One pass and one erase: erasing each line from the front made a read
        // of short lines quadratic (a 64 KiB read of "\n" cost ~30 ms of keeld's CPU).
        size_t start = 0;
        for (size_t nl; (nl = partial_.find('\n', start)) != std::string::npos; start = nl + 1) {
            size_t end = nl > start && partial_[nl - 1] == '\r' ? nl - 1 : nl;
            add_line(partial_.substr(start, end - start));
        }
        partial_.erase(0, start);
        if (partial_.size() > 4096) {
            add_line(partial_);
            partial_.clear();
        }
        dropped_ += n - keep;
        dropped_total_ += n - keep;
        write_out();
        return keep == n;
    } catch (...) {
        return true;
    }
}

void LogBuffer::flush_dropped() noexcept {
    if (!dropped_) return;
    uint64_t d = dropped_;
    dropped_ = 0;
    std::string rate =
        rate_ >= 1024 ? std::to_string(rate_ >> 10) + " KiB/s" : std::to_string(rate_) + " bytes/s";
    note("dropped " + std::to_string(d) + " bytes of output (more than " + rate + ")");
}

void LogBuffer::note(const std::string& line) noexcept {
    add_line("[keeld] " + line);
    write_out();
}

std::vector<std::string> LogBuffer::tail(size_t n) const {
    size_t from = lines_.size() > n ? lines_.size() - n : 0;
    return {lines_.begin() + static_cast<long>(from), lines_.end()};
}

std::vector<std::string> LogBuffer::since(uint64_t seq, uint64_t& next) const {
    next = seq_;
    uint64_t oldest = seq_ - lines_.size() + 1; // number of lines_.front()
    if (seq >= seq_) return {};
    uint64_t from = std::max(seq + 1, oldest) - oldest;
    return {lines_.begin() + static_cast<long>(from), lines_.end()};
}

} // namespace keel::keeld
