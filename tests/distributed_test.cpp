// Data-parallel training over processes on this machine (c10d over Gloo on the loopback address),
// started by hand and by torchrun, against one process accumulating the same micro-batches.
#include <segnet/checkpoint.h>

#include "distributed/process_group.h"
#include "expect_error.h"
#include "temp_dir.h"
#include "run_cli.h"

#include <gtest/gtest.h>
#include <torch/torch.h>

#include <arpa/inet.h>
#include <chrono>
#include <csignal>
#include <fstream>
#include <iterator>
#include <netinet/in.h>
#include <sstream>
#include <sys/socket.h>
#include <sys/wait.h>
#include <thread>
#include <unistd.h>

using namespace segnet;
namespace fs = std::filesystem;
using segnet::test::contains;
using segnet::test::TempDir;
using segnet::test::quote;
using segnet::test::slurp;

namespace {


std::string last_line(const std::string& text) {
  std::istringstream in(text);
  std::string line, last;
  while (std::getline(in, line))
    if (!line.empty()) last = line;
  return last;
}

// A port nothing listens on now (the kernel's choice of a free one).
int free_port() {
  const int s = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in address{};
  address.sin_family = AF_INET;
  address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  ::bind(s, reinterpret_cast<sockaddr*>(&address), sizeof address);
  socklen_t length = sizeof address;
  ::getsockname(s, reinterpret_cast<sockaddr*>(&address), &length);
  ::close(s);
  return ntohs(address.sin_port);
}

// `segnet ARGS` in the background, one BLAS and compute thread (the same arithmetic in every run),
// stderr to `log`.
class Process {
 public:
  Process(const std::string& args, const fs::path& log) : log_(log) {
    const std::string command = "OMP_NUM_THREADS=1 exec " + quote(SEGNET_CLI) + " " + args + " >/dev/null 2>" + quote(log);
    pid_ = ::fork();
    if (pid_ == 0) {
      ::execl("/bin/sh", "sh", "-c", command.c_str(), static_cast<char*>(nullptr));
      ::_exit(127);
    }
  }
  ~Process() {
    if (pid_ > 0 && !status_) ::kill(pid_, SIGKILL), ::waitpid(pid_, nullptr, 0);
  }
  // The exit status, or nullopt if still running after `seconds` (then it is killed).
  std::optional<int> wait(double seconds) {
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::duration<double>(seconds);
    while (!status_ && std::chrono::steady_clock::now() < deadline) {
      int raw = 0;
      if (::waitpid(pid_, &raw, WNOHANG) == pid_) status_ = WIFEXITED(raw) ? WEXITSTATUS(raw) : 128 + WTERMSIG(raw);
      else std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
    return status_;
  }
  void kill() { ::kill(pid_, SIGKILL); }
  std::string err() const { return slurp(log_); }

 private:
  fs::path log_;
  pid_t pid_ = -1;
  std::optional<int> status_;
};

// Runs `args` on `world` processes by hand (--world-size/--rank/--master); true if all exit 0.
::testing::AssertionResult run_processes(const std::string& args, int world, const fs::path& scratch) {
  const std::string master = " --world-size " + std::to_string(world) + " --master 127.0.0.1:" + std::to_string(free_port());
  std::vector<std::unique_ptr<Process>> processes;
  for (int r = 0; r < world; ++r)
    processes.push_back(std::make_unique<Process>(args + master + " --rank " + std::to_string(r),
                                                  scratch / ("rank" + std::to_string(r) + ".log")));
  for (int r = 0; r < world; ++r) {
    const auto status = processes[r]->wait(300);
    if (status != 0) return ::testing::AssertionFailure() << "rank " << r << " exited " << (status ? *status : -1) << ":\n" << processes[r]->err();
  }
  return ::testing::AssertionSuccess();
}

::testing::AssertionResult run_one(const std::string& args, const fs::path& log) {
  Process p(args, log);
  const auto status = p.wait(300);
  if (status != 0) return ::testing::AssertionFailure() << "exited " << (status ? *status : -1) << ":\n" << p.err();
  return ::testing::AssertionSuccess();
}

// The largest difference between two checkpoints' parameters and buffers (the teacher's included).
double max_difference(const fs::path& a, const fs::path& b) {
  CheckpointReader ra(a), rb(b);
  SegNet ma = ra.model(), mb = rb.model();
  double worst = 0;
  const auto pb = mb->named_parameters(), bb = mb->named_buffers();
  for (const auto& p : ma->named_parameters()) worst = std::max(worst, (p.value() - pb[p.key()]).abs().max().item<double>());
  for (const auto& x : ma->named_buffers())
    worst = std::max(worst, (x.value().to(torch::kDouble) - bb[x.key()].to(torch::kDouble)).abs().max().item<double>());
  return worst;
}

// metrics.csv's rows without the timing columns (seconds, images/s, waits), which differ run to run.
std::vector<std::vector<double>> metric_rows(const fs::path& csv) {
  std::ifstream in(csv);
  std::vector<std::vector<double>> rows;
  std::string line;
  std::getline(in, line);
  while (std::getline(in, line)) {
    std::vector<double> row;
    std::istringstream cells(line);
    int column = 0;
    for (std::string cell; std::getline(cells, cell, ','); ++column)
      if (column < 5 || column == 8) row.push_back(std::stod(cell));
    rows.push_back(row);
  }
  return rows;
}

void expect_same_rows(const fs::path& a, const fs::path& b, double tolerance) {
  const auto ra = metric_rows(a), rb = metric_rows(b);
  ASSERT_EQ(ra.size(), rb.size());
  for (size_t i = 0; i < ra.size(); ++i)
    for (size_t j = 0; j < ra[i].size(); ++j)
      if (!(std::isnan(ra[i][j]) && std::isnan(rb[i][j])))
        EXPECT_NEAR(ra[i][j], rb[i][j], tolerance) << "row " << i << " column " << j;
}

class Distributed : public ::testing::Test {
 protected:
  void SetUp() override {
    data_ = dir_.path / "data";
    ASSERT_TRUE(run_one("synth --out " + quote(data_) + " --count 14 --size 32x32", dir_.path / "synth.log"));
  }
  // segnet-basic on 12 training images (+ 2 validation): 3 steps of 4 images per epoch.
  std::string train_args(const std::string& out, int epochs) const {
    return "train --data " + quote(data_) + " --model segnet-basic --size 32x32 --threads 1 --seed 5 --epochs " +
           std::to_string(epochs) + " --out " + quote(dir_.path / out);
  }
  TempDir dir_;
  fs::path data_;
};

}  // namespace

// 2 processes x 2 images compute what 1 process accumulating 2 micro-batches of 2 computes: the same
// weights and batch-norm statistics (to float rounding of the summed gradients; the teacher of
// pseudo-label training included, whose unlabelled stream is sharded too), the same metrics.csv, and
// a distributed validation equal to `segnet eval` of the saved model.
TEST_F(Distributed, TwoProcessesTrainWhatOneProcessAccumulatingTwoTrains) {
  const std::string pseudo = " --unlabeled val --pseudo-rampup 0 --pseudo-threshold 0.5";
  ASSERT_TRUE(run_processes(train_args("two", 2) + " --batch 2" + pseudo, 2, dir_.path));
  ASSERT_TRUE(run_one(train_args("one", 2) + " --batch 2 --accumulate 2" + pseudo, dir_.path / "one.log"));
  EXPECT_LT(max_difference(dir_.path / "two/last.pt", dir_.path / "one/last.pt"), 1e-5);
  expect_same_rows(dir_.path / "two/metrics.csv", dir_.path / "one/metrics.csv", 1e-5);
  // Rank 0 alone wrote the run.
  std::vector<std::string> files;
  for (const auto& f : fs::directory_iterator(dir_.path / "two")) files.push_back(f.path().filename());
  std::sort(files.begin(), files.end());
  EXPECT_EQ(files, (std::vector<std::string>{"best.pt", "config.json", "curves.png", "last.pt", "metrics.csv"}));

  const fs::path json = dir_.path / "eval.json";
  ASSERT_TRUE(run_one("eval --threads 1 --checkpoint " + quote(dir_.path / "two/last.pt") + " --data " + quote(data_) +
                          " --list val.txt --json " + quote(json),
                      dir_.path / "eval.log"));
  const std::string eval = slurp(json);
  const double miou = metric_rows(dir_.path / "two/metrics.csv").back()[4];
  const auto at = eval.find("\"miou\"");
  ASSERT_NE(at, std::string::npos) << eval;
  EXPECT_NEAR(std::stod(eval.substr(eval.find(':', at) + 1)), miou, 1e-6);
}

// A distributed run stopped after an epoch and resumed ends where the uninterrupted one does (at a
// constant learning rate: poly's schedule depends on the number of epochs, which the resume raises).
TEST_F(Distributed, ResumedRunEqualsTheUninterruptedRun) {
  const std::string options = " --batch 2 --lr-schedule constant";
  ASSERT_TRUE(run_processes(train_args("whole", 2) + options, 2, dir_.path));
  ASSERT_TRUE(run_processes(train_args("halves", 1) + options, 2, dir_.path));
  ASSERT_TRUE(run_processes(train_args("halves", 2) + " --resume", 2, dir_.path));
  EXPECT_EQ(max_difference(dir_.path / "whole/last.pt", dir_.path / "halves/last.pt"), 0.0);
  expect_same_rows(dir_.path / "whole/metrics.csv", dir_.path / "halves/metrics.csv", 0.0);
  // Resuming with another number of processes would change the batch of a step.
  Process alone(train_args("halves", 3) + " --batch 2 --resume", dir_.path / "alone.log");
  ASSERT_EQ(alone.wait(60), 1);
  EXPECT_TRUE(contains(last_line(alone.err()), "--world-size")) << alone.err();
}

// A process killed mid-run: the survivor fails with an error saying so, within the timeout.
TEST_F(Distributed, KilledProcessMakesTheOtherFailWithinTheTimeout) {
  const std::string args = train_args("run", 100000) + " --batch 2 --world-size 2 --dist-timeout 30 --master 127.0.0.1:" +
                           std::to_string(free_port());
  Process first(args + " --rank 0", dir_.path / "rank0.log"), second(args + " --rank 1", dir_.path / "rank1.log");
  for (int i = 0; i < 600 && !fs::exists(dir_.path / "run/last.pt"); ++i)  // training is under way
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  ASSERT_TRUE(fs::exists(dir_.path / "run/last.pt")) << first.err();
  second.kill();
  const auto status = first.wait(60);
  ASSERT_TRUE(status.has_value()) << "the surviving process did not stop";
  EXPECT_EQ(*status, 1);
  const std::string error = last_line(first.err());
  EXPECT_EQ(error.rfind("segnet: error: ", 0), 0u) << first.err();
  EXPECT_TRUE(contains(error, "lost the other processes")) << first.err();
}

// Gloo's writes to a peer that has died raise SIGPIPE, which at its default killed the survivor
// silently (exit status 141) instead of letting it fail with the error above, unless ignored. Joining
// the group ignores it, but keeps a handler the program installed.
TEST(ProcessGroup, JoiningIgnoresBrokenPipesUnlessTheProgramHandlesThem) {
  struct sigaction before {};
  ::sigaction(SIGPIPE, nullptr, &before);
  const auto disposition = [] {
    struct sigaction now {};
    ::sigaction(SIGPIPE, nullptr, &now);
    return now.sa_handler;
  };
  DistributedOptions alone;
  alone.world_size = 1;
  alone.timeout_seconds = 30;
  std::signal(SIGPIPE, SIG_DFL);
  alone.master_port = free_port();
  { ProcessGroup group(alone); }
  EXPECT_EQ(disposition(), SIG_IGN);
  void (*const handler)(int) = [](int) {};
  std::signal(SIGPIPE, handler);
  alone.master_port = free_port();
  { ProcessGroup group(alone); }
  EXPECT_EQ(disposition(), handler);
  ::sigaction(SIGPIPE, &before, nullptr);
}

// Mistakes in the rendezvous fail fast (or at the timeout) with one error line naming the problem.
TEST_F(Distributed, BadConfigurationFailsNamingTheProblem) {
  const std::string args = train_args("run", 1) + " --batch 2 --dist-timeout 3";
  {  // a rank outside the world
    Process p(args + " --world-size 2 --rank 2", dir_.path / "rank.log");
    ASSERT_EQ(p.wait(30), 1);
    EXPECT_TRUE(contains(last_line(p.err()), "--rank: 2 is not in 0..1")) << p.err();
  }
  {  // nobody serves the rendezvous
    const int port = free_port();
    Process p(args + " --world-size 2 --rank 1 --master 127.0.0.1:" + std::to_string(port), dir_.path / "master.log");
    ASSERT_EQ(p.wait(60), 1);
    EXPECT_TRUE(contains(last_line(p.err()), "cannot meet the others at 127.0.0.1:" + std::to_string(port))) << p.err();
  }
  {  // the rendezvous port is taken
    const int s = ::socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in address{};
    address.sin_family = AF_INET;
    address.sin_addr.s_addr = htonl(INADDR_ANY);
    ASSERT_EQ(::bind(s, reinterpret_cast<sockaddr*>(&address), sizeof address), 0);
    ::listen(s, 1);
    socklen_t length = sizeof address;
    ::getsockname(s, reinterpret_cast<sockaddr*>(&address), &length);
    Process p(args + " --world-size 2 --rank 0 --master 127.0.0.1:" + std::to_string(ntohs(address.sin_port)),
              dir_.path / "taken.log");
    const auto status = p.wait(60);
    ::close(s);
    ASSERT_EQ(status, 1);
    EXPECT_TRUE(contains(last_line(p.err()), "Address already in use")) << p.err();
  }
  {  // the processes disagree on an option: both fail naming it
    const std::string master = " --world-size 2 --master 127.0.0.1:" + std::to_string(free_port());
    Process a(args + master + " --rank 0", dir_.path / "a.log"), b(args + master + " --rank 1 --lr 0.5", dir_.path / "b.log");
    ASSERT_EQ(a.wait(60), 1);
    ASSERT_EQ(b.wait(60), 1);
    for (const Process* p : {&a, &b}) EXPECT_TRUE(contains(last_line(p->err()), "--lr: differs between the processes")) << p->err();
  }
  EXPECT_FALSE(fs::exists(dir_.path / "run/last.pt"));
}

// torchrun starts segnet unchanged (its agent serves the store, its environment says who is who) and
// the run equals one process accumulating the two micro-batches.
TEST_F(Distributed, TorchrunStartsTheProcesses) {
  if (std::system("/usr/bin/python3 -c 'import torch.distributed.run' >/dev/null 2>&1") != 0)
    GTEST_SKIP() << "python3-torch is not installed: torchrun is not available";
  // Debian's torchrun 1.13 fails on Python 3.11 without --redirects/--tee.
  const std::string torchrun = "OMP_NUM_THREADS=1 timeout 300 /usr/bin/python3 -m torch.distributed.run --nnodes 1 --nproc_per_node 2 "
                               "--master_addr 127.0.0.1 --master_port " + std::to_string(free_port()) +
                               " --redirects 1 --tee 1 --no_python " + quote(SEGNET_CLI) + " ";
  const std::string command = torchrun + train_args("torchrun", 2) + " --batch 2 >" + quote(dir_.path / "torchrun.log") + " 2>&1";
  ASSERT_EQ(std::system(command.c_str()), 0) << slurp(dir_.path / "torchrun.log");
  ASSERT_TRUE(run_one(train_args("one", 2) + " --batch 2 --accumulate 2", dir_.path / "one.log"));
  EXPECT_LT(max_difference(dir_.path / "torchrun/last.pt", dir_.path / "one/last.pt"), 1e-5);
  expect_same_rows(dir_.path / "torchrun/metrics.csv", dir_.path / "one/metrics.csv", 1e-5);
}

// Under `torchrun --max_restarts`, a group that lost a process starts again and --resume-if-exists
// continues from last.pt: the run ends with the weights of an uninterrupted one.
TEST_F(Distributed, TorchrunRestartResumesFromTheLastEpoch) {
  if (std::system("/usr/bin/python3 -c 'import torch.distributed.run' >/dev/null 2>&1") != 0)
    GTEST_SKIP() << "python3-torch is not installed: torchrun is not available";
  const std::string options = " --batch 2 --lr-schedule constant --resume-if-exists";
  const auto torchrun = [&](const std::string& out) {
    return "OMP_NUM_THREADS=1 exec timeout 300 /usr/bin/python3 -m torch.distributed.run --nnodes 1 --nproc_per_node 2 --max_restarts 1 "
           "--master_addr 127.0.0.1 --master_port " + std::to_string(free_port()) + " --redirects 1 --tee 1 --no_python " +
           quote(SEGNET_CLI) + " " + train_args(out, 12) + options + " >" + quote(dir_.path / (out + ".log")) + " 2>&1";
  };
  ASSERT_EQ(std::system(torchrun("whole").c_str()), 0) << slurp(dir_.path / "whole.log");
  const pid_t agent = ::fork();
  if (agent == 0) {
    const std::string command = torchrun("restarted");
    ::execl("/bin/sh", "sh", "-c", command.c_str(), static_cast<char*>(nullptr));
    ::_exit(127);
  }
  for (int i = 0; i < 600 && !fs::exists(dir_.path / "restarted/last.pt"); ++i)
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  // One of the two segnet processes (not the agent, whose command line starts with python3).
  const std::string kill = "pkill -9 -n -f '^" + std::string(SEGNET_CLI) + " train .*restarted'";
  EXPECT_EQ(std::system(kill.c_str()), 0);
  int raw = 0;
  ::waitpid(agent, &raw, 0);
  ASSERT_TRUE(WIFEXITED(raw) && WEXITSTATUS(raw) == 0) << slurp(dir_.path / "restarted.log");
  EXPECT_TRUE(contains(slurp(dir_.path / "restarted.log"), "lost the other processes"));  // the restart did happen
  EXPECT_EQ(max_difference(dir_.path / "whole/last.pt", dir_.path / "restarted/last.pt"), 0.0);
  expect_same_rows(dir_.path / "whole/metrics.csv", dir_.path / "restarted/metrics.csv", 0.0);
}
