#include "keeld/log_buffer.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>

namespace keel::keeld {

void LogBuffer::add_line(const std::string& line) noexcept {
    try {
        lines_.push_back(line);
        seq_++;
        while (lines_.size() > max_lines_) lines_.pop_front();
        if (file_.empty()) return;
        struct stat st{};
        if (::stat(file_.c_str(), &st) == 0 && static_cast<size_t>(st.st_size) > max_file_)
            ::rename(file_.c_str(), (file_ + ".1").c_str());
        int fd = ::open(file_.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0640);
        if (fd < 0) return;
        std::string l = line + "\n";
        ssize_t ignored = ::write(fd, l.data(), l.size());
        (void)ignored;
        ::close(fd);
    } catch (...) {
    }
}

void LogBuffer::append(const char* data, size_t n) noexcept {
    try {
        partial_.append(data, n);
        // A line ends at \n; a \r before it (sshd, programs that think they own a terminal) is
        // not part of it.
        for (size_t nl; (nl = partial_.find('\n')) != std::string::npos; partial_.erase(0, nl + 1))
            add_line(partial_.substr(0, nl > 0 && partial_[nl - 1] == '\r' ? nl - 1 : nl));
        if (partial_.size() > 4096) {
            add_line(partial_);
            partial_.clear();
        }
    } catch (...) {
    }
}

void LogBuffer::note(const std::string& line) noexcept { add_line("[keeld] " + line); }

std::vector<std::string> LogBuffer::tail(size_t n) const {
    size_t from = lines_.size() > n ? lines_.size() - n : 0;
    return {lines_.begin() + static_cast<long>(from), lines_.end()};
}

} // namespace keel::keeld

namespace keel::keeld {

std::vector<std::string> LogBuffer::since(uint64_t seq, uint64_t& next) const {
    next = seq_;
    uint64_t oldest = seq_ - lines_.size() + 1; // number of lines_.front()
    if (seq >= seq_) return {};
    uint64_t from = std::max(seq + 1, oldest) - oldest;
    return {lines_.begin() + static_cast<long>(from), lines_.end()};
}

} // namespace keel::keeld
