// read_launch_env under each launcher. Launcher variables are real environment variables,
// so the tests set them with setenv and clear every one they know of around each test.
#include <gtest/gtest.h>
#include <stdlib.h>

#include <map>
#include <optional>
#include <string>

#include "base/config.h"
#include "core/bootstrap.h"

namespace ciuic::core {
namespace {

const char* const kKnownVariables[] = {
    "CIUIC_RANK", "CIUIC_WORLD_SIZE", "CIUIC_LOCAL_RANK", "CIUIC_ROOT", "CIUIC_SECRET",
    "RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT", "TORCHELASTIC_RUN_ID",
    "OMPI_COMM_WORLD_RANK", "OMPI_COMM_WORLD_SIZE", "OMPI_COMM_WORLD_LOCAL_RANK",
    "OMPI_COMM_WORLD_LOCAL_SIZE", "OMPI_MCA_ess_base_jobid", "PMIX_NAMESPACE",
    "SLURM_PROCID", "SLURM_NTASKS", "SLURM_LOCALID", "SLURM_NNODES", "SLURM_JOB_ID",
    "SLURM_STEP_ID"};

class LaunchEnvTest : public ::testing::Test {
 protected:
  void SetUp() override {
    for (const char* name : kKnownVariables) {
      if (const char* v = getenv(name)) saved_[name] = v;
      unsetenv(name);
    }
    config::reload_environment();
  }
  void TearDown() override {
    for (const char* name : kKnownVariables) unsetenv(name);
    for (const auto& [name, value] : saved_) setenv(name.c_str(), value.c_str(), 1);
    config::reload_environment();
  }
  static void set(const std::map<std::string, std::string>& vars) {
    for (const auto& [name, value] : vars) setenv(name.c_str(), value.c_str(), 1);
    config::reload_environment();  // CIUIC_* values are read once and cached
  }
  // The error text of read_launch_env, or "" if it succeeded.
  static std::string error() {
    LaunchInfo info;
    Status s = read_launch_env(&info);
    EXPECT_TRUE(s.ok() || s.code() == CIUIC_ERR_INVALID_ARGUMENT) << s.to_string();
    return s.ok() ? "" : s.message();
  }
  static LaunchInfo info() {
    LaunchInfo info;
    Status s = read_launch_env(&info);
    EXPECT_TRUE(s.ok()) << s.to_string();
    return info;
  }

 private:
  std::map<std::string, std::string> saved_;
};

TEST_F(LaunchEnvTest, CiuicVariables) {
  set({{"CIUIC_RANK", "2"}, {"CIUIC_WORLD_SIZE", "4"}, {"CIUIC_ROOT", "127.0.0.1:29600"},
       {"CIUIC_SECRET", "00112233445566778899aabbccddeeff"},
       // A launcher around it does not matter: CIUIC_* wins.
       {"RANK", "0"}, {"WORLD_SIZE", "8"}});
  LaunchInfo got = info();
  EXPECT_EQ(got.rank, 2);
  EXPECT_EQ(got.nranks, 4);
  EXPECT_EQ(got.id.root.to_string(), "127.0.0.1:29600");
  EXPECT_TRUE(got.have_secret);
  EXPECT_EQ(got.id.secret[0], 0x00);
  EXPECT_EQ(got.id.secret[5], 0x55);
  EXPECT_EQ(got.id.secret[15], 0xff);
  EXPECT_NE(got.source.find("ciuic"), std::string::npos);
}

TEST_F(LaunchEnvTest, CiuicVariablesMissingOrWrong) {
  set({{"CIUIC_RANK", "1"}, {"CIUIC_ROOT", "127.0.0.1:29600"}});
  EXPECT_NE(error().find("CIUIC_WORLD_SIZE"), std::string::npos) << error();
  set({{"CIUIC_WORLD_SIZE", "4"}});
  unsetenv("CIUIC_ROOT");
  EXPECT_NE(error().find("CIUIC_ROOT=<host of rank 0>:<port>"), std::string::npos) << error();
  set({{"CIUIC_ROOT", "127.0.0.1"}});
  EXPECT_NE(error().find("no port"), std::string::npos) << error();
  set({{"CIUIC_ROOT", "127.0.0.1:29600"}, {"CIUIC_SECRET", "abc"}});
  EXPECT_NE(error().find("CIUIC_SECRET must be 32 hex digits"), std::string::npos) << error();
  set({{"CIUIC_SECRET", "00112233445566778899aabbccddeeff"}, {"CIUIC_RANK", "4"}});
  EXPECT_NE(error().find("rank 4 is out of range for a world of 4"), std::string::npos) << error();
  set({{"CIUIC_RANK", "two"}});
  EXPECT_NE(error().find("CIUIC_RANK='two' is not an integer"), std::string::npos) << error();
}

TEST_F(LaunchEnvTest, Torchrun) {
  set({{"RANK", "3"}, {"WORLD_SIZE", "4"}, {"LOCAL_RANK", "1"}, {"MASTER_ADDR", "127.0.0.1"},
       {"MASTER_PORT", "29500"}});
  LaunchInfo got = info();
  EXPECT_EQ(got.rank, 3);
  EXPECT_EQ(got.nranks, 4);
  EXPECT_EQ(got.local_rank, 1);
  EXPECT_EQ(got.source, "torchrun");
  // torch's TCPStore holds MASTER_PORT; ciuic's root takes the next port.
  EXPECT_EQ(got.id.root.to_string(), "127.0.0.1:29501");
  EXPECT_FALSE(got.have_secret);
  // Another rank of the same job derives the same secret; another job does not.
  set({{"RANK", "0"}, {"LOCAL_RANK", "0"}});
  EXPECT_EQ(info().id.secret, got.id.secret);
  set({{"MASTER_PORT", "29700"}});
  EXPECT_NE(info().id.secret, got.id.secret);
}

TEST_F(LaunchEnvTest, CiuicRootWinsOverMasterAddr) {
  set({{"RANK", "0"}, {"WORLD_SIZE", "2"}, {"MASTER_ADDR", "127.0.0.1"}, {"MASTER_PORT", "29500"},
       {"CIUIC_ROOT", "127.0.0.2:31000"}});
  EXPECT_EQ(info().id.root.to_string(), "127.0.0.2:31000");
}

TEST_F(LaunchEnvTest, TorchrunMissingVariablesAreNamed) {
  set({{"RANK", "0"}});
  EXPECT_NE(error().find("WORLD_SIZE is not set"), std::string::npos) << error();
  set({{"WORLD_SIZE", "2"}, {"MASTER_ADDR", "127.0.0.1"}});
  EXPECT_NE(error().find("MASTER_PORT is not"), std::string::npos) << error();
  unsetenv("MASTER_ADDR");
  EXPECT_NE(error().find("MASTER_ADDR and MASTER_PORT are not set"), std::string::npos) << error();
  set({{"MASTER_ADDR", "127.0.0.1"}, {"MASTER_PORT", "65535"}});
  EXPECT_NE(error().find("leaves no port"), std::string::npos) << error();
  set({{"MASTER_PORT", "29500"}, {"RANK", "x1"}});
  EXPECT_NE(error().find("RANK='x1' is not a number"), std::string::npos) << error();
  set({{"RANK", "2"}});
  EXPECT_NE(error().find("rank 2 is out of range for a world of 2"), std::string::npos) << error();
}

TEST_F(LaunchEnvTest, OpenMpiOnOneNodeUsesLoopbackAndAJobPort) {
  set({{"OMPI_COMM_WORLD_RANK", "1"}, {"OMPI_COMM_WORLD_SIZE", "4"},
       {"OMPI_COMM_WORLD_LOCAL_RANK", "1"}, {"OMPI_COMM_WORLD_LOCAL_SIZE", "4"},
       {"OMPI_MCA_ess_base_jobid", "3087794177"}});
  LaunchInfo got = info();
  EXPECT_EQ(got.rank, 1);
  EXPECT_EQ(got.nranks, 4);
  EXPECT_EQ(got.local_rank, 1);
  EXPECT_EQ(got.source, "Open MPI");
  EXPECT_TRUE(got.id.root.is_loopback());
  EXPECT_GE(got.id.root.port(), 20000);
  EXPECT_LT(got.id.root.port(), 60000);
  set({{"OMPI_COMM_WORLD_RANK", "3"}, {"OMPI_COMM_WORLD_LOCAL_RANK", "3"}});
  LaunchInfo other = info();
  EXPECT_EQ(other.id.root.to_string(), got.id.root.to_string());
  EXPECT_EQ(other.id.secret, got.id.secret);
  // PMIX_NAMESPACE serves when the ess job id is absent.
  unsetenv("OMPI_MCA_ess_base_jobid");
  set({{"PMIX_NAMESPACE", "prterun-host-1234@1"}});
  EXPECT_TRUE(info().id.root.is_loopback());
}

TEST_F(LaunchEnvTest, OpenMpiAcrossNodesNeedsCiuicRoot) {
  set({{"OMPI_COMM_WORLD_RANK", "1"}, {"OMPI_COMM_WORLD_SIZE", "4"},
       {"OMPI_COMM_WORLD_LOCAL_SIZE", "2"}, {"OMPI_MCA_ess_base_jobid", "1"}});
  EXPECT_NE(error().find("set CIUIC_ROOT=<host of rank 0>:<port>"), std::string::npos) << error();
  set({{"CIUIC_ROOT", "127.0.0.1:29999"}});
  EXPECT_EQ(info().id.root.to_string(), "127.0.0.1:29999");
  unsetenv("OMPI_COMM_WORLD_SIZE");
  EXPECT_NE(error().find("OMPI_COMM_WORLD_SIZE is not set"), std::string::npos) << error();
}

TEST_F(LaunchEnvTest, SlurmOnOneNode) {
  set({{"SLURM_PROCID", "5"}, {"SLURM_NTASKS", "8"}, {"SLURM_LOCALID", "5"}, {"SLURM_NNODES", "1"},
       {"SLURM_JOB_ID", "4242"}, {"SLURM_STEP_ID", "0"}});
  LaunchInfo got = info();
  EXPECT_EQ(got.rank, 5);
  EXPECT_EQ(got.nranks, 8);
  EXPECT_EQ(got.local_rank, 5);
  EXPECT_EQ(got.source, "Slurm");
  EXPECT_TRUE(got.id.root.is_loopback());
  EXPECT_GE(got.id.root.port(), 20000);
  EXPECT_LT(got.id.root.port(), 60000);
  // The next step of the job is another store.
  set({{"SLURM_STEP_ID", "1"}});
  EXPECT_NE(info().id.secret, got.id.secret);
}

TEST_F(LaunchEnvTest, SlurmMissingVariablesAreNamed) {
  set({{"SLURM_PROCID", "0"}, {"SLURM_NNODES", "1"}, {"SLURM_JOB_ID", "1"}});
  EXPECT_NE(error().find("SLURM_NTASKS is not set"), std::string::npos) << error();
  set({{"SLURM_NTASKS", "2"}, {"SLURM_NNODES", "2"}});
  EXPECT_NE(error().find("set CIUIC_ROOT=<host of rank 0>:<port>"), std::string::npos) << error();
}

TEST_F(LaunchEnvTest, NoLauncherSaysWhatToSet) {
  std::string e = error();
  EXPECT_NE(e.find("CIUIC_RANK"), std::string::npos) << e;
  EXPECT_NE(e.find("CIUIC_ROOT"), std::string::npos) << e;
}

}  // namespace
}  // namespace ciuic::core
