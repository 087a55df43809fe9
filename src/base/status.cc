#include "base/status.h"

#include <cstring>

#include "base/enum_bits.h"

namespace ciuic {

std::string Status::to_string() const {
  if (ok()) return "success";
  return std::string(ciuic_result_string(code_)) + ": " + message_;
}

Status invalid_argument(std::string message) {
  return {CIUIC_ERR_INVALID_ARGUMENT, std::move(message)};
}
Status system_error(std::string message) { return {CIUIC_ERR_SYSTEM, std::move(message)}; }
Status errno_error(std::string_view what, int err) {
  return {CIUIC_ERR_SYSTEM,
          std::string(what) + ": " + std::strerror(err) + " (errno " + std::to_string(err) + ")"};
}
Status remote_error(std::string message) { return {CIUIC_ERR_REMOTE, std::move(message)}; }
Status timeout_error(std::string message) { return {CIUIC_ERR_TIMEOUT, std::move(message)}; }
Status aborted_error(std::string message) { return {CIUIC_ERR_ABORTED, std::move(message)}; }
Status unsupported(std::string message) { return {CIUIC_ERR_UNSUPPORTED, std::move(message)}; }
Status internal_error(std::string message) { return {CIUIC_ERR_INTERNAL, std::move(message)}; }

}  // namespace ciuic

extern "C" const char* ciuic_result_string(ciuic_result_t result) {
  switch (ciuic::enum_bits(&result)) {
    case CIUIC_SUCCESS: return "success";
    case CIUIC_ERR_INVALID_ARGUMENT: return "invalid argument";
    case CIUIC_ERR_SYSTEM: return "system error";
    case CIUIC_ERR_REMOTE: return "remote peer error";
    case CIUIC_ERR_TIMEOUT: return "timeout";
    case CIUIC_ERR_ABORTED: return "aborted";
    case CIUIC_ERR_UNSUPPORTED: return "unsupported";
    case CIUIC_ERR_INTERNAL: return "internal error";
    case CIUIC_IN_PROGRESS: return "in progress";
  }
  return "unknown result code";
}
