// Errors carry errno and context together ("pivot_root /x: EINVAL"), never a bare "failed".
#pragma once

#include <cerrno>
#include <string>
#include <utility>
#include <variant>

namespace keel {

struct Error {
    std::string message; // what was being done, with its object: "mount /proc"
    int code = 0;        // errno, or 0 when the error is not a system error

    // "mount /proc: EPERM (Operation not permitted)"
    std::string str() const;
};

// Error from the current errno.
Error sys_error(std::string what);
Error sys_error(std::string what, int err);
Error plain_error(std::string what);

// Prefixes context: "create container x: " + inner.
Error wrap(const std::string& context, Error inner);

// errno name ("EPERM"), or the number when unknown.
std::string errno_name(int err);

template <class T> class [[nodiscard]] Result {
  public:
    Result(T value) : v_(std::move(value)) {}
    Result(Error err) : v_(std::move(err)) {}
    bool ok() const { return v_.index() == 0; }
    explicit operator bool() const { return ok(); }
    T& value() { return std::get<0>(v_); }
    const T& value() const { return std::get<0>(v_); }
    T& operator*() { return value(); }
    T* operator->() { return &value(); }
    const Error& error() const { return std::get<1>(v_); }

  private:
    std::variant<T, Error> v_;
};

// Result of an operation without a value.
class [[nodiscard]] Status {
  public:
    Status() = default;
    Status(Error err) : err_(std::move(err)), failed_(true) {}
    bool ok() const { return !failed_; }
    explicit operator bool() const { return ok(); }
    const Error& error() const { return err_; }

  private:
    Error err_;
    bool failed_ = false;
};

} // namespace keel

// Propagate a failed Status/Result from the enclosing function.
#define KEEL_TRY(expr)                                                                             \
    do {                                                                                           \
        auto keel_try_r_ = (expr);                                                                 \
        if (!keel_try_r_.ok()) return keel_try_r_.error();                                         \
    } while (0)
