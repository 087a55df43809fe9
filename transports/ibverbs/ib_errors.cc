#include "transports/ibverbs/ib_errors.h"

#include "transports/ibverbs/verbs_api.h"

namespace ciuic::transport::ib {
namespace {

struct StatusText {
  int status;
  const char* name;
  const char* words;
  const char* hint;
};

#if CIUIC_HAVE_VERBS_H
constexpr StatusText kTexts[] = {
    {IBV_WC_SUCCESS, "IBV_WC_SUCCESS", "success", ""},
    {IBV_WC_LOC_LEN_ERR, "IBV_WC_LOC_LEN_ERR", "local length error",
     "a message was larger than the buffer meant for it"},
    {IBV_WC_LOC_QP_OP_ERR, "IBV_WC_LOC_QP_OP_ERR", "local QP operation error",
     "a work request exceeded the queue pair's limits (a bug in ciuic: please report)"},
    {IBV_WC_LOC_EEC_OP_ERR, "IBV_WC_LOC_EEC_OP_ERR", "local EE context operation error", ""},
    {IBV_WC_LOC_PROT_ERR, "IBV_WC_LOC_PROT_ERR", "local protection error",
     "a local buffer was not (or no longer) registered: was it freed during the operation?"},
    {IBV_WC_WR_FLUSH_ERR, "IBV_WC_WR_FLUSH_ERR", "flushed",
     "the queue pair was in the error state: an earlier error on it is the cause, or, if none "
     "was reported, the adapter or its port failed (check dmesg and the link)"},
    {IBV_WC_MW_BIND_ERR, "IBV_WC_MW_BIND_ERR", "memory window bind error", ""},
    {IBV_WC_BAD_RESP_ERR, "IBV_WC_BAD_RESP_ERR", "bad response",
     "the peer answered with something unexpected: same ciuic version on both sides?"},
    {IBV_WC_LOC_ACCESS_ERR, "IBV_WC_LOC_ACCESS_ERR", "local access error",
     "a local buffer's registration does not allow this access"},
    {IBV_WC_REM_INV_REQ_ERR, "IBV_WC_REM_INV_REQ_ERR", "remote invalid request",
     "the peer refused the request: a message larger than its buffer, or a version mismatch"},
    {IBV_WC_REM_ACCESS_ERR, "IBV_WC_REM_ACCESS_ERR", "remote access error",
     "the peer's buffer was deregistered or too small"},
    {IBV_WC_REM_OP_ERR, "IBV_WC_REM_OP_ERR", "remote operation error",
     "the peer could not complete the operation (its queue pair failed?)"},
    {IBV_WC_RETRY_EXC_ERR, "IBV_WC_RETRY_EXC_ERR", "retry exceeded",
     "packets dropped: check GID index / traffic class / link (CIUIC_IB_GID_INDEX, "
     "CIUIC_IB_TC), or the peer process is gone"},
    {IBV_WC_RNR_RETRY_EXC_ERR, "IBV_WC_RNR_RETRY_EXC_ERR", "receiver not ready, retry exceeded",
     "the peer posted no receive in time (is it alive and progressing?)"},
    {IBV_WC_LOC_RDD_VIOL_ERR, "IBV_WC_LOC_RDD_VIOL_ERR", "local RDD violation", ""},
    {IBV_WC_REM_INV_RD_REQ_ERR, "IBV_WC_REM_INV_RD_REQ_ERR", "remote invalid RD request", ""},
    {IBV_WC_REM_ABORT_ERR, "IBV_WC_REM_ABORT_ERR", "remote aborted", "the peer aborted the operation"},
    {IBV_WC_INV_EECN_ERR, "IBV_WC_INV_EECN_ERR", "invalid EE context number", ""},
    {IBV_WC_INV_EEC_STATE_ERR, "IBV_WC_INV_EEC_STATE_ERR", "invalid EE context state", ""},
    {IBV_WC_FATAL_ERR, "IBV_WC_FATAL_ERR", "fatal error",
     "the adapter reported a fatal error: check dmesg and the link"},
    {IBV_WC_RESP_TIMEOUT_ERR, "IBV_WC_RESP_TIMEOUT_ERR", "response timeout",
     "the peer did not answer in time: check the link and CIUIC_IB_TIMEOUT"},
    {IBV_WC_GENERAL_ERR, "IBV_WC_GENERAL_ERR", "general error", "check dmesg"},
};
#else
constexpr StatusText kTexts[] = {{0, "IBV_WC_SUCCESS", "success", ""}};
#endif

const StatusText* find(int status) {
  for (const StatusText& t : kTexts)
    if (t.status == status) return &t;
  return nullptr;
}

}  // namespace

std::string wc_status_name(int status) {
  const StatusText* t = find(status);
  return t ? t->name : "status " + std::to_string(status);
}

std::string describe_wc_status(int status) {
  const StatusText* t = find(status);
  if (t == nullptr) return "unknown completion status " + std::to_string(status);
  std::string out = std::string(t->words) + " (" + t->name + ", " + std::to_string(status) + ")";
  if (t->hint[0] != '\0') out += std::string(": ") + t->hint;
  return out;
}

}  // namespace ciuic::transport::ib
