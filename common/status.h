// Status and Result<T>: the error type of everything that crosses a module or process
// boundary (files, configs, requests, wire messages, CUDA/NCCL/Gloo calls).
//
// A Status is either OK or carries a code and a message written for the user who has
// to act on it ("prompt has 700 tokens; this model allows 512"). Result<T> holds a T or
// a non-OK Status. Both are [[nodiscard]]: dropping one is a compile warning.
//
// Broken internal invariants are not Statuses: they abort through FLOVER_CHECK with the
// values that broke them (see check.h).
//
// Thread-safety: value types; distinct objects may be used from distinct threads.
#pragma once

#include <optional>
#include <string>
#include <utility>
#include <variant>

#include "common/check.h"

namespace flover {

enum class StatusCode {
  kOk = 0,
  kInvalidArgument,   // the caller's input is wrong (request, flag, config value)
  kNotFound,          // a file, request id or key does not exist
  kCorruption,        // a file or message is malformed, truncated or inconsistent
  kIoError,           // the OS refused a read/write/open
  kResourceExhausted, // out of KV blocks, memory, queue space
  kUnavailable,       // a peer is not (yet/any more) reachable
  kCancelled,
  kFailedPrecondition,  // the system is not in a state that allows this (e.g. no shared memory)
  kInternal,          // a library call failed in a way the caller cannot fix
  kDeadlineExceeded,  // the work did not finish within the time it was given
  kPermissionDenied,  // the peer or file is not allowed (a refused key, a secret key file others can read)
};

const char* StatusCodeName(StatusCode code);

class [[nodiscard]] Status {
 public:
  Status() = default;  // OK
  Status(StatusCode code, std::string message) : code_(code), message_(std::move(message)) {}

  static Status Ok() { return Status(); }

  bool ok() const { return code_ == StatusCode::kOk; }
  StatusCode code() const { return code_; }
  const std::string& message() const { return message_; }
  // "InvalidArgument: prompt has 700 tokens; ..." or "OK".
  std::string ToString() const;

  // Returns a copy whose message is "<context>: <message>", for adding where an error
  // happened (a file name, a config key) as it travels up.
  Status WithContext(const std::string& context) const;

 private:
  StatusCode code_ = StatusCode::kOk;
  std::string message_;
};

inline Status InvalidArgument(std::string m) { return {StatusCode::kInvalidArgument, std::move(m)}; }
inline Status NotFound(std::string m) { return {StatusCode::kNotFound, std::move(m)}; }
inline Status Corruption(std::string m) { return {StatusCode::kCorruption, std::move(m)}; }
inline Status IoError(std::string m) { return {StatusCode::kIoError, std::move(m)}; }
inline Status ResourceExhausted(std::string m) { return {StatusCode::kResourceExhausted, std::move(m)}; }
inline Status Unavailable(std::string m) { return {StatusCode::kUnavailable, std::move(m)}; }
inline Status Cancelled(std::string m) { return {StatusCode::kCancelled, std::move(m)}; }
inline Status FailedPrecondition(std::string m) { return {StatusCode::kFailedPrecondition, std::move(m)}; }
inline Status Internal(std::string m) { return {StatusCode::kInternal, std::move(m)}; }
inline Status DeadlineExceeded(std::string m) { return {StatusCode::kDeadlineExceeded, std::move(m)}; }
inline Status PermissionDenied(std::string m) { return {StatusCode::kPermissionDenied, std::move(m)}; }

// A T or an error Status. Constructing from an OK Status is an invariant violation.
template <typename T>
class [[nodiscard]] Result {
 public:
  Result(T value) : v_(std::move(value)) {}  // NOLINT(google-explicit-constructor)
  Result(Status status) : v_(std::move(status)) {  // NOLINT(google-explicit-constructor)
    FLOVER_CHECK(!std::get<Status>(v_).ok()) << "Result built from an OK Status";
  }

  bool ok() const { return std::holds_alternative<T>(v_); }
  const Status& status() const {
    static const Status kOkStatus;
    return ok() ? kOkStatus : std::get<Status>(v_);
  }
  // REQUIRES: ok()
  T& value() & { CheckOk(); return std::get<T>(v_); }
  const T& value() const& { CheckOk(); return std::get<T>(v_); }
  T&& value() && { CheckOk(); return std::get<T>(std::move(v_)); }
  T& operator*() & { return value(); }
  const T& operator*() const& { return value(); }
  T* operator->() { return &value(); }
  const T* operator->() const { return &value(); }

 private:
  void CheckOk() const {
    FLOVER_CHECK(ok()) << "value() of a failed Result: " << std::get<Status>(v_).ToString();
  }
  std::variant<T, Status> v_;
};

}  // namespace flover

#define FLOVER_CONCAT_INNER_(a, b) a##b
#define FLOVER_CONCAT_(a, b) FLOVER_CONCAT_INNER_(a, b)

// Returns from the enclosing function when `expr` (a Status) is not OK.
#define FLOVER_RETURN_IF_ERROR(expr)                  \
  do {                                                \
    ::flover::Status _flover_status = (expr);         \
    if (!_flover_status.ok()) return _flover_status;  \
  } while (0)

// `lhs = value of expr` (a Result<T>), or returns its Status from the enclosing function.
#define FLOVER_ASSIGN_OR_RETURN(lhs, expr) \
  FLOVER_ASSIGN_OR_RETURN_IMPL_(FLOVER_CONCAT_(_flover_result_, __LINE__), lhs, expr)
#define FLOVER_ASSIGN_OR_RETURN_IMPL_(tmp, lhs, expr) \
  auto tmp = (expr);                                  \
  if (!tmp.ok()) return tmp.status();                 \
  lhs = std::move(tmp).value()
