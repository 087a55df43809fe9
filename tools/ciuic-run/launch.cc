#include "launch.h"

#include <fcntl.h>
#include <poll.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <optional>

#include "base/clock.h"
#include "base/log.h"
#include "base/net.h"
#include "launch_internal.h"

extern char** environ;

namespace ciuic::launch {
namespace {

using internal::SignalPipe;
using internal::TaggedStream;

// The variables the launcher sets; inherited values of the same names are dropped.
constexpr const char* kLaunchVariables[] = {"CIUIC_RANK",       "CIUIC_WORLD_SIZE",
                                            "CIUIC_LOCAL_RANK", "CIUIC_LOCAL_SIZE",
                                            "CIUIC_ROOT",       "CIUIC_SECRET"};

// How long a started child may take to reach exec (or report that exec failed).
constexpr int kExecReportMs = 10000;
// After the last rank exited, how long output still written by its leftovers is copied.
constexpr int kDrainAfterExitMs = 1000;
// poll() wakes at least this often, so deadlines are checked even if a signal is lost.
constexpr int kPollCapMs = 100;
// How long after a rank exits with an error a rank killed by a signal may still be named
// the culprit instead: a process with large mappings takes milliseconds to finish dying,
// and over shared memory its peers hear of it in microseconds.
constexpr int kCulpritWindowMs = 500;

struct Rank {
  int index = 0;
  pid_t pid = -1;
  bool running = false;
  std::optional<TaggedStream> out;
  std::optional<TaggedStream> err;
};

std::string env_name(const std::string& entry) { return entry.substr(0, entry.find('=')); }

Status validate(const LaunchOptions& options) {
  if (options.nranks < 1) {
    return invalid_argument("rank count must be at least 1 (got " + std::to_string(options.nranks) +
                            ")");
  }
  if (options.argv.empty() || options.argv[0].empty()) {
    return invalid_argument("no program to run: give the program and its arguments");
  }
  if (options.grace_ms < 0) return invalid_argument("grace period must not be negative");
  for (const std::string& entry : options.extra_env) {
    size_t eq = entry.find('=');
    if (eq == std::string::npos || eq == 0) {
      return invalid_argument("environment entry '" + entry + "' is not of the form NAME=value");
    }
  }
  return Status::Ok();
}

// A port that was free a moment ago on root_host: bound with port 0, then released so
// that rank 0 can bind it. (Another process may take it meanwhile; rank 0 then reports
// the bind error.)
Status pick_root_address(const std::string& root_host, std::string* root) {
  net::SocketAddress address;
  CIUIC_RETURN_IF_ERROR(net::parse_address(root_host, 0, &address).prefix("root host"));
  net::Fd listener;
  net::SocketAddress bound;
  Status status = net::listen_on(address, 1, &listener, &bound);
  if (!status.ok()) {
    return status.prefix("cannot find a free port on " + root_host +
                         " for the bootstrap root (check that the address is local)");
  }
  *root = bound.to_string();
  return Status::Ok();
}

std::string make_secret() {
  unsigned char bytes[16];
  net::random_bytes(bytes, sizeof(bytes));
  static const char kHex[] = "0123456789abcdef";
  std::string hex;
  for (unsigned char b : bytes) {
    hex.push_back(kHex[b >> 4]);
    hex.push_back(kHex[b & 15]);
  }
  return hex;
}

// The launcher's environment with extra_env and the rank's variables laid over it.
std::vector<std::string> rank_environment(const LaunchOptions& options, int rank,
                                          const std::string& root, const std::string& secret) {
  std::vector<std::string> overrides = options.extra_env;
  overrides.push_back("CIUIC_RANK=" + std::to_string(rank));
  overrides.push_back("CIUIC_WORLD_SIZE=" + std::to_string(options.nranks));
  overrides.push_back("CIUIC_LOCAL_RANK=" + std::to_string(rank));
  overrides.push_back("CIUIC_LOCAL_SIZE=" + std::to_string(options.nranks));
  overrides.push_back("CIUIC_ROOT=" + root);
  overrides.push_back("CIUIC_SECRET=" + secret);

  // Every rank runs on this machine: unless told otherwise, their traffic stays on
  // loopback, like the bootstrap root.
  bool ifname_given = false;
  for (const std::string& o : overrides) ifname_given |= env_name(o) == "CIUIC_SOCKET_IFNAME";
  for (char** entry = environ; entry != nullptr && *entry != nullptr; ++entry)
    ifname_given |= env_name(*entry) == "CIUIC_SOCKET_IFNAME";
  if (!ifname_given &&
      (options.root_host.rfind("127.", 0) == 0 || options.root_host == "localhost"))
    overrides.push_back("CIUIC_SOCKET_IFNAME=lo");

  std::vector<std::string> env;
  for (char** entry = environ; entry != nullptr && *entry != nullptr; ++entry) {
    std::string inherited(*entry);
    std::string name = env_name(inherited);
    bool replaced = false;
    for (const std::string& o : overrides) replaced = replaced || env_name(o) == name;
    for (const char* v : kLaunchVariables) replaced = replaced || name == v;
    if (!replaced) env.push_back(std::move(inherited));
  }
  for (std::string& o : overrides) {
    // A later -x NAME=... wins over an earlier one of the same name.
    std::erase_if(env, [&](const std::string& e) { return env_name(e) == env_name(o); });
    env.push_back(std::move(o));
  }
  return env;
}

std::vector<char*> c_strings(std::vector<std::string>& strings) {
  std::vector<char*> out;
  for (std::string& s : strings) out.push_back(s.data());
  out.push_back(nullptr);
  return out;
}

std::string describe_exit(const Rank& rank, int wait_status) {
  std::string who =
      "rank " + std::to_string(rank.index) + " (pid " + std::to_string(rank.pid) + ")";
  if (WIFSIGNALED(wait_status)) {
    return who + " killed by " + internal::signal_name(WTERMSIG(wait_status)) +
           (WCOREDUMP(wait_status) ? " (core dumped)" : "");
  }
  return who + " exited with status " + std::to_string(WEXITSTATUS(wait_status));
}

int exit_code_of(int wait_status) {
  if (WIFSIGNALED(wait_status)) return 128 + WTERMSIG(wait_status);
  return WEXITSTATUS(wait_status);
}

// Everything a forked child needs, prepared before fork: between fork and exec only
// async-signal-safe calls are allowed.
struct ChildPlan {
  char** argv;
  char** envp;
  pid_t group;  // 0: become the group leader
  pid_t parent;
  int stdout_fd = -1;  // write ends of the tagging pipes, or -1
  int stderr_fd = -1;
  int exec_report_fd;  // errno goes here if exec fails
};

[[noreturn]] void run_child(const ChildPlan& plan) {
  ::setpgid(0, plan.group);
  ::prctl(PR_SET_PDEATHSIG, SIGKILL);
  if (::getppid() != plan.parent) ::_exit(127);  // the launcher died before prctl
  SignalPipe::reset_in_child();
  int null_fd = ::open("/dev/null", O_RDONLY);
  if (null_fd >= 0) ::dup2(null_fd, STDIN_FILENO);
  if (plan.stdout_fd >= 0) ::dup2(plan.stdout_fd, STDOUT_FILENO);
  if (plan.stderr_fd >= 0) ::dup2(plan.stderr_fd, STDERR_FILENO);
  ::execvpe(plan.argv[0], plan.argv, plan.envp);
  int err = errno;
  [[maybe_unused]] ssize_t n = ::write(plan.exec_report_fd, &err, sizeof(err));
  ::_exit(127);
}

// Waits (bounded) until the child has exec'ed: end of file on the report pipe means
// exec succeeded (the pipe is close-on-exec); an int on it is exec's errno.
int wait_exec_report(int report_fd, int rank) {
  Deadline deadline = Deadline::after_ms(kExecReportMs);
  while (!deadline.expired()) {
    pollfd p = {report_fd, POLLIN, 0};
    int ready = ::poll(&p, 1, deadline.poll_timeout_ms(kPollCapMs));
    if (ready < 0 && errno != EINTR) break;
    if (ready <= 0) continue;
    int err = 0;
    ssize_t n = ::read(report_fd, &err, sizeof(err));
    if (n < 0 && errno == EINTR) continue;
    return n == sizeof(err) ? err : 0;
  }
  CIUIC_LOG_WARN(log::kInit, "rank %d did not reach exec within %d ms; carrying on", rank,
                 kExecReportMs);
  return 0;
}

class Launch {
 public:
  Launch(const LaunchOptions& options, LaunchResult* result) : options_(options), result_(result) {}
  ~Launch() {
    kill_all(SIGKILL);
    reap(/*blocking=*/true);
  }

  Status start();
  void run();

 private:
  Status spawn(int index, std::vector<std::string> env);
  void fail(std::string why, int code);
  void kill_all(int signo);
  void reap(bool blocking);
  void handle_signals();
  int running_count() const;

  const LaunchOptions& options_;
  LaunchResult* result_;
  SignalPipe signals_;
  std::vector<Rank> ranks_;
  pid_t group_ = 0;
  bool failed_ = false;
  bool killed_ = false;     // SIGKILL sent after the grace period
  bool signalled_ = false;  // any signal sent to the ranks: their deaths are ours, not failures
  int forwarded_signals_ = 0;
  std::optional<Deadline> kill_deadline_;  // set once the job is going down
  std::string kill_reason_;
  // Set while the verdict is a rank that exited with an error: a rank found killed by a
  // signal before this passes is the likelier culprit (ranks that notice a death can exit
  // before the killed process has finished dying) and takes the verdict over.
  std::optional<Deadline> signal_may_take_over_;
};

Status Launch::start() {
  CIUIC_RETURN_IF_ERROR(signals_.install());
  std::string root;
  CIUIC_RETURN_IF_ERROR(pick_root_address(options_.root_host, &root));
  std::string secret = make_secret();
  ranks_.resize(options_.nranks);
  // One rank at a time: if the program cannot be executed, no other rank is started.
  for (int i = 0; i < options_.nranks; ++i) {
    ranks_[i].index = i;
    CIUIC_RETURN_IF_ERROR(spawn(i, rank_environment(options_, i, root, secret)));
    if (failed_) break;
  }
  return Status::Ok();
}

Status Launch::spawn(int index, std::vector<std::string> env) {
  std::vector<std::string> argv_copy = options_.argv;
  std::vector<char*> argv = c_strings(argv_copy);
  std::vector<char*> envp = c_strings(env);
  net::Fd report_read, report_write, out_read, out_write, err_read, err_write;
  int fds[2];
  if (::pipe2(fds, O_CLOEXEC) != 0) return errno_error("exec report pipe", errno);
  report_read.reset(fds[0]);
  report_write.reset(fds[1]);
  if (options_.tag_output) {
    if (::pipe2(fds, O_CLOEXEC | O_NONBLOCK) != 0) return errno_error("output pipe", errno);
    out_read.reset(fds[0]);
    out_write.reset(fds[1]);
    if (::pipe2(fds, O_CLOEXEC | O_NONBLOCK) != 0) return errno_error("output pipe", errno);
    err_read.reset(fds[0]);
    err_write.reset(fds[1]);
    // The child's ends block as ordinary stdout does; only the launcher's ends poll.
    ::fcntl(out_write.get(), F_SETFL, 0);
    ::fcntl(err_write.get(), F_SETFL, 0);
  }
  ChildPlan plan{argv.data(),     envp.data(),       group_, ::getpid(), out_write.get(),
                 err_write.get(), report_write.get()};
  pid_t pid = ::fork();
  if (pid < 0) return errno_error("fork for rank " + std::to_string(index), errno);
  if (pid == 0) run_child(plan);

  Rank& rank = ranks_[index];
  rank.pid = pid;
  rank.running = true;
  if (group_ == 0) group_ = pid;
  ::setpgid(pid, group_);  // also done by the child; whoever is first wins the race
  report_write.reset();
  if (options_.tag_output) {
    rank.out.emplace(index, out_read.release(), STDOUT_FILENO);
    rank.err.emplace(index, err_read.release(), STDERR_FILENO);
  }
  int exec_errno = wait_exec_report(report_read.get(), index);
  if (exec_errno != 0) {
    fail("rank " + std::to_string(index) + " (pid " + std::to_string(pid) + "): cannot execute '" +
             options_.argv[0] + "': " + std::strerror(exec_errno) +
             " (check the path, that the file is executable, and PATH)",
         127);
    // It is about to exit 127; reap it here so it is not reported twice.
    ::kill(pid, SIGKILL);
    while (::waitpid(pid, nullptr, 0) < 0 && errno == EINTR) {
    }
    rank.running = false;
    kill_deadline_ = Deadline::after_ms(0);  // ranks already started cannot run without it
  }
  return Status::Ok();
}

void Launch::fail(std::string why, int code) {
  if (failed_) return;
  failed_ = true;
  result_->failure = std::move(why);
  result_->exit_code = code;
}

void Launch::kill_all(int signo) {
  signalled_ = true;
  if (group_ > 0) ::kill(-group_, signo);
  // Also each rank directly, in case one left the group.
  for (const Rank& rank : ranks_) {
    if (rank.running) ::kill(rank.pid, signo);
  }
}

int Launch::running_count() const {
  int n = 0;
  for (const Rank& rank : ranks_) n += rank.running ? 1 : 0;
  return n;
}

void Launch::reap(bool blocking) {
  std::vector<std::pair<const Rank*, int>> failures;  // found in this pass
  for (Rank& rank : ranks_) {
    if (!rank.running) continue;
    int wait_status = 0;
    pid_t done;
    do {
      done = ::waitpid(rank.pid, &wait_status, blocking ? 0 : WNOHANG);
    } while (done < 0 && errno == EINTR);
    if (done == 0) continue;
    rank.running = false;
    if (done < 0) continue;  // not our child any more (reaped elsewhere): nothing to report
    bool ok = WIFEXITED(wait_status) && WEXITSTATUS(wait_status) == 0;
    if (ok || signalled_) continue;  // ranks we signalled are not the culprit
    failures.emplace_back(&rank, wait_status);
  }
  // Ranks found dead together: one killed by a signal is the likelier cause, the others
  // the ranks that noticed it and gave up.
  std::stable_sort(failures.begin(), failures.end(), [](const auto& a, const auto& b) {
    return WIFSIGNALED(a.second) && !WIFSIGNALED(b.second);
  });
  for (const auto& [rank, wait_status] : failures) {
    if (!failed_) {
      fail(describe_exit(*rank, wait_status), exit_code_of(wait_status));
      kill_reason_ = "rank " + std::to_string(rank->index) + " failed";
      if (running_count() > 0) kill_deadline_ = Deadline::after_ms(options_.grace_ms);
      if (!WIFSIGNALED(wait_status)) signal_may_take_over_ = Deadline::after_ms(kCulpritWindowMs);
    } else if (WIFSIGNALED(wait_status) && signal_may_take_over_ &&
               !signal_may_take_over_->expired()) {
      CIUIC_LOG_WARN(log::kInit, "also: %s", result_->failure.c_str());
      result_->failure = describe_exit(*rank, wait_status);
      result_->exit_code = exit_code_of(wait_status);
      kill_reason_ = "rank " + std::to_string(rank->index) + " failed";
      signal_may_take_over_.reset();
    } else {
      CIUIC_LOG_WARN(log::kInit, "also: %s", describe_exit(*rank, wait_status).c_str());
    }
  }
}

void Launch::handle_signals() {
  for (int signo : signals_.drain()) {
    if (signo == SIGCHLD) continue;  // reap() runs after every wake-up anyway
    ++forwarded_signals_;
    if (forwarded_signals_ > 1) {  // asked twice: stop waiting
      CIUIC_LOG_WARN(log::kInit, "second %s: killing all ranks now",
                     internal::signal_name(signo).c_str());
      kill_deadline_ = Deadline::after_ms(0);
      continue;
    }
    int forwarded = signo == SIGHUP ? SIGTERM : signo;
    kill_all(forwarded);
    fail("received " + internal::signal_name(signo) + ", forwarded " +
             internal::signal_name(forwarded) + " to the ranks",
         128 + signo);
    if (!kill_deadline_) {
      kill_reason_ = "the launcher received " + internal::signal_name(signo);
      kill_deadline_ = Deadline::after_ms(options_.grace_ms);
    }
  }
}

void Launch::run() {
  Deadline job_deadline =
      options_.timeout_ms > 0 ? Deadline::after_ms(options_.timeout_ms) : Deadline::never();
  std::optional<Deadline> drain_deadline;
  for (;;) {
    std::vector<pollfd> fds = {{signals_.read_fd(), POLLIN, 0}};
    std::vector<TaggedStream*> streams;
    for (Rank& rank : ranks_) {
      for (auto* s : {&rank.out, &rank.err}) {
        if (s->has_value() && (*s)->open()) {
          fds.push_back({(*s)->fd(), POLLIN, 0});
          streams.push_back(&**s);
        }
      }
    }
    int running = running_count();
    if (running == 0 && streams.empty()) break;
    if (running == 0 && !drain_deadline) drain_deadline = Deadline::after_ms(kDrainAfterExitMs);
    if (drain_deadline && drain_deadline->expired()) {
      // Something the ranks started still holds their output open; stop copying it.
      for (TaggedStream* s : streams) s->close();
      break;
    }
    int timeout = job_deadline.poll_timeout_ms(kPollCapMs);
    if (kill_deadline_) timeout = std::min(timeout, kill_deadline_->poll_timeout_ms(kPollCapMs));
    if (drain_deadline) timeout = std::min(timeout, drain_deadline->poll_timeout_ms(kPollCapMs));
    int ready = ::poll(fds.data(), fds.size(), timeout);
    if (ready > 0) {
      for (size_t i = 1; i < fds.size(); ++i) {
        if (fds[i].revents != 0) streams[i - 1]->pump();
      }
    }
    handle_signals();
    reap(/*blocking=*/false);

    if (running_count() > 0 && job_deadline.expired() && !kill_deadline_) {
      fail("timed out after " + std::to_string(options_.timeout_ms) + " ms with " +
               std::to_string(running_count()) + " rank(s) still running",
           124);
      kill_reason_ = "the job timed out";
      kill_all(SIGTERM);
      kill_deadline_ = Deadline::after_ms(options_.grace_ms);
    }
    if (kill_deadline_ && kill_deadline_->expired() && !killed_ && running_count() > 0) {
      for (const Rank& rank : ranks_) {
        if (!rank.running) continue;
        CIUIC_LOG_WARN(log::kInit, "rank %d (pid %d) still running %d ms after %s: killing it",
                       rank.index, static_cast<int>(rank.pid), options_.grace_ms,
                       kill_reason_.c_str());
      }
      killed_ = true;
      kill_all(SIGKILL);
    }
  }
}

}  // namespace

Status run_local(const LaunchOptions& options, LaunchResult* result) {
  *result = LaunchResult{};
  CIUIC_RETURN_IF_ERROR(validate(options));
  Launch launch(options, result);
  Status status = launch.start();
  if (!status.ok()) return status;  // ~Launch kills and reaps what was started
  launch.run();
  return Status::Ok();
}

}  // namespace ciuic::launch
