#include "common/error.h"

#include <cstring>

namespace keel {

std::string errno_name(int err) {
    const char* name = strerrorname_np(err);
    return name ? name : std::to_string(err);
}

std::string Error::str() const {
    if (code == 0) return message;
    return message + ": " + errno_name(code) + " (" + std::strerror(code) + ")";
}

Error sys_error(std::string what) {
    return Error{std::move(what), errno};
}
Error sys_error(std::string what, int err) {
    return Error{std::move(what), err};
}
Error plain_error(std::string what) {
    return Error{std::move(what), 0};
}

Error wrap(const std::string& context, Error inner) {
    inner.message = context + ": " + inner.message;
    return inner;
}

} // namespace keel
