// Status: a result code that says how bad, and a message that says who and why.
// Used by every layer; the C API turns it into ciuic_result_t plus the last-error text.
#pragma once

#include <string>
#include <string_view>
#include <utility>

#include "ciuic/ciuic.h"

namespace ciuic {

class [[nodiscard]] Status {
 public:
  Status() = default;
  Status(ciuic_result_t code, std::string message) : code_(code), message_(std::move(message)) {}

  static Status Ok() { return {}; }

  bool ok() const { return code_ == CIUIC_SUCCESS; }
  ciuic_result_t code() const { return code_; }
  const std::string& message() const { return message_; }

  // Prepends context as the error travels up: "allreduce #3: " + "peer 2 closed ...".
  Status& prefix(std::string_view context) {
    if (!ok()) message_.insert(0, std::string(context) + ": ");
    return *this;
  }
  std::string to_string() const;

 private:
  ciuic_result_t code_ = CIUIC_SUCCESS;
  std::string message_;
};

Status invalid_argument(std::string message);
Status system_error(std::string message);  // append strerror(errno) yourself where it applies
Status errno_error(std::string_view what, int err);  // "what: strerror(err) (errno N)"
Status remote_error(std::string message);
Status timeout_error(std::string message);
Status aborted_error(std::string message);
Status unsupported(std::string message);
Status internal_error(std::string message);

}  // namespace ciuic

#define CIUIC_CONCAT_INNER(a, b) a##b
#define CIUIC_CONCAT(a, b) CIUIC_CONCAT_INNER(a, b)

// Returns the status from the enclosing function if it is an error.
#define CIUIC_RETURN_IF_ERROR(expr)                                  \
  do {                                                               \
    ::ciuic::Status CIUIC_CONCAT(status_, __LINE__) = (expr);        \
    if (!CIUIC_CONCAT(status_, __LINE__).ok()) return CIUIC_CONCAT(status_, __LINE__); \
  } while (0)
