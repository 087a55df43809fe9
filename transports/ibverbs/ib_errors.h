// Completion statuses in words, with what to check.
#pragma once

#include <string>

namespace ciuic::transport::ib {

// "retry exceeded (IBV_WC_RETRY_EXC_ERR, 12): packets were dropped or the peer stopped
// answering: check the GID index / traffic class / link, or whether the peer is alive"
std::string describe_wc_status(int status);
// The verbs name alone ("IBV_WC_RETRY_EXC_ERR"), "status N" when unknown.
std::string wc_status_name(int status);

}  // namespace ciuic::transport::ib
