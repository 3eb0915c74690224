#include "worker/comm/shm_communicator.h"

#include <fcntl.h>
#include <linux/futex.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <climits>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <random>
#include <sstream>
#include <vector>

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#endif

namespace flover {
namespace {

using Clock = std::chrono::steady_clock;

constexpr uint64_t kMagic = 0x314d48535643464cull;  // "LFCVSHM1"
// How long one futex sleep lasts before the waiter re-checks its deadline and its peer.
constexpr std::chrono::milliseconds kSleepSlice{10};

struct alignas(64) SegmentHeader {
  uint64_t magic;
  uint64_t nonce;
  uint64_t chunk_floats;
  uint32_t world;
  std::atomic<uint32_t> aborted;  // 0, or 1 + the rank that failed first
};

// One cache line per rank, written only by that rank (sleepers: by its waiters).
struct alignas(64) RankState {
  std::atomic<uint32_t> round;     // the last round this rank published
  std::atomic<uint32_t> sleepers;  // peers asleep on `round`
  std::atomic<uint32_t> left;      // 1 once its communicator is destroyed
  int32_t pid;
  uint64_t pid_namespace;
};

static_assert(std::atomic<uint32_t>::is_always_lock_free, "futex words must be plain lock-free 32-bit atomics");
static_assert(sizeof(std::atomic<uint32_t>) == sizeof(uint32_t));

size_t DataOffset(int world) {
  const size_t end = sizeof(SegmentHeader) + sizeof(RankState) * world;
  return (end + 4095) / 4096 * 4096;
}

size_t SegmentBytes(int world, size_t chunk_floats) {
  return DataOffset(world) + sizeof(float) * 2 * static_cast<size_t>(world) * chunk_floats;
}

// `round` has been published by a counter that now reads `value` (wrap-around safe: the
// ranks of a group are never more than one round apart).
bool Reached(uint32_t value, uint32_t round) { return static_cast<int32_t>(value - round) >= 0; }

void Pause() {
#if defined(__x86_64__) || defined(__i386__)
  _mm_pause();
#endif
}

// Shared (not process-private) futex operations on a word of the segment.
void FutexWait(std::atomic<uint32_t>* word, uint32_t expected, std::chrono::nanoseconds timeout) {
  timespec ts{static_cast<time_t>(timeout.count() / 1000000000), static_cast<long>(timeout.count() % 1000000000)};
  (void)::syscall(SYS_futex, reinterpret_cast<uint32_t*>(word), FUTEX_WAIT, expected, &ts, nullptr, 0);
}

void FutexWakeAll(std::atomic<uint32_t>* word) {
  (void)::syscall(SYS_futex, reinterpret_cast<uint32_t*>(word), FUTEX_WAKE, INT_MAX, nullptr, nullptr, 0);
}

std::string ReadFirstLine(const char* path) {
  std::ifstream in(path);
  std::string line;
  std::getline(in, line);
  return line.empty() ? "?" : line;
}

std::string Namespace(const char* kind) {
  char target[128] = {};
  const std::string path = std::string("/proc/self/ns/") + kind;
  const ssize_t n = ::readlink(path.c_str(), target, sizeof(target) - 1);
  return n > 0 ? std::string(target, n) : "?";
}

uint64_t NamespaceInode(const char* kind) {
  const std::string ns = Namespace(kind);  // "pid:[4026531836]"
  const size_t open = ns.find('[');
  return open == std::string::npos ? 0 : std::strtoull(ns.c_str() + open + 1, nullptr, 10);
}

std::string Hostname() {
  char name[256] = {};
  return ::gethostname(name, sizeof(name) - 1) == 0 ? name : "?";
}

// Processes that can map one segment by name run on one kernel (boot id) and see one
// /dev/shm (its device and inode). The host name after " host=" is only for messages.
std::string HostIdentity() {
  struct stat shm {};
  const std::string dev_shm = ::stat("/dev/shm", &shm) == 0
                                  ? std::to_string(shm.st_dev) + ":" + std::to_string(shm.st_ino)
                                  : std::string("none");
  return ReadFirstLine("/proc/sys/kernel/random/boot_id") + " /dev/shm=" + dev_shm + " host=" + Hostname();
}

std::string WithoutHost(const std::string& identity) { return identity.substr(0, identity.rfind(" host=")); }

// False once `pid` has exited (gone, or a zombie not yet reaped).
bool ProcessAlive(int pid) {
  if (::kill(pid, 0) != 0 && errno == ESRCH) return false;
  std::ifstream stat("/proc/" + std::to_string(pid) + "/stat");
  std::string text;
  std::getline(stat, text);
  const size_t paren = text.rfind(')');
  if (paren == std::string::npos || paren + 2 >= text.size()) return true;  // unknown: assume alive
  const char state = text[paren + 2];
  return state != 'Z' && state != 'X';
}

uint64_t RandomU64() {
  std::random_device device;
  return (static_cast<uint64_t>(device()) << 32) ^ device();
}

std::string Hex(uint64_t v) {
  char text[17];
  std::snprintf(text, sizeof(text), "%016llx", static_cast<unsigned long long>(v));
  return text;
}

std::vector<char> Bytes(const std::string& s) { return std::vector<char>(s.begin(), s.end()); }

}  // namespace

// A mapped segment. The creator owns the name until it unlinks it.
struct ShmCommunicator::Segment {
  void* base = MAP_FAILED;
  size_t bytes = 0;
  int world = 0;
  std::string owned_name;  // unlinked by Unlink() or the destructor

  ~Segment() {
    if (base != MAP_FAILED) ::munmap(base, bytes);
    Unlink();
  }
  void Unlink() {
    if (!owned_name.empty()) ::shm_unlink(owned_name.c_str());
    owned_name.clear();
  }

  SegmentHeader& header() const { return *static_cast<SegmentHeader*>(base); }
  RankState& state(int rank) const {
    return reinterpret_cast<RankState*>(static_cast<char*>(base) + sizeof(SegmentHeader))[rank];
  }
  float* data() const { return reinterpret_cast<float*>(static_cast<char*>(base) + DataOffset(world)); }

  // Maps `name` (created here when `create`), `bytes` long; an error message or "".
  std::string Map(const std::string& name, bool create, size_t size) {
    const int fd = ::shm_open(name.c_str(), create ? O_RDWR | O_CREAT | O_EXCL : O_RDWR, 0600);
    if (fd < 0) return "shm_open(" + name + "): " + std::strerror(errno);
    if (create) owned_name = name;
    std::string error;
    if (create) {
      // Reserve the pages now: a full /dev/shm fails here, not with SIGBUS on first touch.
      if (::ftruncate(fd, static_cast<off_t>(size)) != 0) {
        error = "ftruncate(" + name + ", " + std::to_string(size) + "): " + std::strerror(errno);
      } else if (const int e = ::posix_fallocate(fd, 0, static_cast<off_t>(size)); e != 0) {
        error = "reserving " + std::to_string(size) + " bytes of /dev/shm for " + name + ": " + std::strerror(e);
      }
    } else {
      struct stat st {};
      if (::fstat(fd, &st) != 0) {
        error = "fstat(" + name + "): " + std::strerror(errno);
      } else if (static_cast<size_t>(st.st_size) != size) {
        error = name + " is " + std::to_string(st.st_size) + " bytes, expected " + std::to_string(size);
      }
    }
    if (error.empty()) {
      base = ::mmap(nullptr, size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
      if (base == MAP_FAILED) error = "mmap(" + name + "): " + std::strerror(errno);
      bytes = size;
    }
    ::close(fd);
    return error;
  }
};

Result<std::unique_ptr<HostCommunicator>> ShmCommunicator::Create(int rank, int world, KvStore& store,
                                                                  const std::string& prefix,
                                                                  const ShmCommunicatorOptions& options) {
  if (world < 1) return InvalidArgument("tensor parallel world size must be >= 1, got " + std::to_string(world));
  if (rank < 0 || rank >= world)
    return InvalidArgument("rank " + std::to_string(rank) + " is outside a group of " + std::to_string(world));
  if (options.timeout.count() <= 0) return InvalidArgument("communicator timeout must be positive");
  if (options.chunk_floats == 0 || options.chunk_floats > (size_t{1} << 28))
    return InvalidArgument("shared-memory chunk must be 1 to 2^28 floats, got " + std::to_string(options.chunk_floats));
  const std::string base = prefix + "/shm/";
  const std::string group = "shared-memory group '" + prefix + "'";
  auto get = [&](const std::string& key) -> Result<std::string> {
    Result<std::vector<char>> value = store.Get(base + key, options.timeout);
    if (!value.ok())
      return Unavailable(group + ", rank " + std::to_string(rank) + ": " + value.status().message());
    return std::string(value->begin(), value->end());
  };

  // 1. One host? Every rank reads every identity, so all reach the same verdict.
  FLOVER_RETURN_IF_ERROR(store.Set(base + "host/" + std::to_string(rank), Bytes(HostIdentity())));
  std::vector<std::string> hosts;
  for (int p = 0; p < world; ++p) {
    FLOVER_ASSIGN_OR_RETURN(std::string host, get("host/" + std::to_string(p)));
    hosts.push_back(std::move(host));
  }
  for (int p = 1; p < world; ++p) {
    if (WithoutHost(hosts[p]) == WithoutHost(hosts[0])) continue;
    return FailedPrecondition(group + ": rank 0 and rank " + std::to_string(p) +
                              " do not share a kernel and /dev/shm (boot id, /dev/shm device:inode, host: '" +
                              hosts[0] + "' vs '" + hosts[p] + "')");
  }

  // 2. Rank 0 creates the segment; its name, or why it failed, goes to every rank.
  const size_t bytes = SegmentBytes(world, options.chunk_floats);
  auto segment = std::make_unique<Segment>();
  segment->world = world;
  std::string name, nonce_hex;
  if (rank == 0) {
    const uint64_t nonce = RandomU64();
    name = "/flover-" + std::to_string(::getpid()) + "-" + Hex(RandomU64());
    nonce_hex = Hex(nonce);
    const std::string error = segment->Map(name, /*create=*/true, bytes);
    if (error.empty()) {
      SegmentHeader& h = segment->header();
      h.magic = kMagic;
      h.nonce = nonce;
      h.chunk_floats = options.chunk_floats;
      h.world = static_cast<uint32_t>(world);
    }
    FLOVER_RETURN_IF_ERROR(store.Set(base + "segment", Bytes(error.empty() ? name + " " + nonce_hex : "!" + error)));
    if (!error.empty()) return FailedPrecondition(group + ": rank 0 could not create the segment: " + error);
  } else {
    FLOVER_ASSIGN_OR_RETURN(const std::string published, get("segment"));
    if (!published.empty() && published[0] == '!')
      return FailedPrecondition(group + ": rank 0 could not create the segment: " + published.substr(1));
    std::istringstream fields(published);
    fields >> name >> nonce_hex;
  }

  // 3. Every rank maps it and says whether that worked.
  std::string error;
  if (rank != 0) {
    error = segment->Map(name, /*create=*/false, bytes);
    if (error.empty()) {
      const SegmentHeader& h = segment->header();
      if (h.magic != kMagic || Hex(h.nonce) != nonce_hex || h.world != static_cast<uint32_t>(world) ||
          h.chunk_floats != options.chunk_floats)
        error = name + " is not this group's segment (another /dev/shm, or different options)";
    }
  }
  if (error.empty()) {
    RankState& me = segment->state(rank);
    me.pid = static_cast<int32_t>(::getpid());
    me.pid_namespace = NamespaceInode("pid");
  }
  FLOVER_RETURN_IF_ERROR(store.Set(base + "attached/" + std::to_string(rank), Bytes(error)));
  std::string failure;
  for (int p = 0; p < world; ++p) {
    FLOVER_ASSIGN_OR_RETURN(const std::string answer, get("attached/" + std::to_string(p)));
    if (!answer.empty() && failure.empty()) failure = "rank " + std::to_string(p) + " could not map it: " + answer;
  }
  segment->Unlink();  // every rank has mapped it or given up: the name is no longer needed
  if (!failure.empty()) return FailedPrecondition(group + ": " + failure);
  return std::unique_ptr<HostCommunicator>(new ShmCommunicator(rank, world, options, std::move(segment)));
}

ShmCommunicator::ShmCommunicator(int rank, int world, const ShmCommunicatorOptions& options,
                                 std::unique_ptr<Segment> segment)
    : rank_(rank), world_(world), options_(options), segment_(std::move(segment)) {}

ShmCommunicator::~ShmCommunicator() {
  // Peers that wait for this rank from now on fail at once instead of at their timeout.
  RankState& me = segment_->state(rank_);
  me.left.store(1, std::memory_order_seq_cst);
  FutexWakeAll(&me.round);
}

float* ShmCommunicator::Buffer(int rank, uint32_t round) const {
  return segment_->data() + (static_cast<size_t>(rank) * 2 + (round & 1)) * options_.chunk_floats;
}

Status ShmCommunicator::Fail(Status status) {
  broken_ = std::move(status);
  uint32_t none = 0;
  segment_->header().aborted.compare_exchange_strong(none, static_cast<uint32_t>(rank_ + 1));
  for (int p = 0; p < world_; ++p) FutexWakeAll(&segment_->state(p).round);
  return broken_;
}

Status ShmCommunicator::Round(const char* op, size_t n) {
  const uint32_t round = ++round_;
  RankState& me = segment_->state(rank_);
  me.round.store(round, std::memory_order_seq_cst);
  if (me.sleepers.load(std::memory_order_seq_cst) > 0) FutexWakeAll(&me.round);

  auto failure = [&](const std::string& why) {
    std::string message = op;
    if (n > 0) message += " of " + std::to_string(n) + " floats";
    return Fail(Unavailable(message + " on tensor-parallel rank " + std::to_string(rank_) + "/" +
                            std::to_string(world_) + " (shared memory) failed: " + why));
  };
  const SegmentHeader& header = segment_->header();
  const uint64_t my_pid_namespace = me.pid_namespace;
  const auto start = Clock::now();
  for (int p = 0; p < world_; ++p) {
    if (p == rank_) continue;
    RankState& peer = segment_->state(p);
    auto reached = [&] { return Reached(peer.round.load(std::memory_order_acquire), round); };
    if (reached()) continue;
    for (int i = 1; !reached(); ++i) {
      if (i % 64 == 0 && Clock::now() - start > options_.spin) break;
      Pause();
    }
    while (!reached()) {
      if (const uint32_t first = header.aborted.load(); first != 0)
        return failure("rank " + std::to_string(first - 1) + " of the group failed first");
      if (peer.left.load() != 0) return failure("rank " + std::to_string(p) + " left the group");
      peer.sleepers.fetch_add(1, std::memory_order_seq_cst);
      const uint32_t seen = peer.round.load(std::memory_order_seq_cst);
      if (!Reached(seen, round)) FutexWait(&peer.round, seen, kSleepSlice);
      peer.sleepers.fetch_sub(1, std::memory_order_seq_cst);
      if (reached()) break;
      if (my_pid_namespace != 0 && peer.pid_namespace == my_pid_namespace && peer.pid > 0 && !ProcessAlive(peer.pid))
        return failure("rank " + std::to_string(p) + " (pid " + std::to_string(peer.pid) + ") exited");
      if (Clock::now() - start > options_.timeout)
        return failure("rank " + std::to_string(p) + " did not arrive within " +
                       std::to_string(options_.timeout.count()) + " ms");
    }
  }
  return Status::Ok();
}

Status ShmCommunicator::AllReduceSum(float* data, size_t n) {
  if (!broken_.ok()) return broken_;
  if (world_ == 1 || n == 0) return Status::Ok();
  for (size_t offset = 0; offset < n; offset += options_.chunk_floats) {
    const size_t count = std::min(options_.chunk_floats, n - offset);
    float* out = data + offset;
    std::memcpy(Buffer(rank_, round_ + 1), out, count * sizeof(float));
    FLOVER_RETURN_IF_ERROR(Round("all-reduce", n));
    // The same rank-order sum on every rank (and as GlooCommunicator's direct path).
    std::memcpy(out, Buffer(0, round_), count * sizeof(float));
    for (int p = 1; p < world_; ++p) {
      const float* part = Buffer(p, round_);
      for (size_t i = 0; i < count; ++i) out[i] += part[i];
    }
  }
  return Status::Ok();
}

Status ShmCommunicator::AllGather(const float* in, size_t n, float* out) {
  if (!broken_.ok()) return broken_;
  if (n == 0) return Status::Ok();
  if (world_ == 1) {
    std::memcpy(out, in, n * sizeof(float));
    return Status::Ok();
  }
  for (size_t offset = 0; offset < n; offset += options_.chunk_floats) {
    const size_t count = std::min(options_.chunk_floats, n - offset);
    std::memcpy(Buffer(rank_, round_ + 1), in + offset, count * sizeof(float));
    FLOVER_RETURN_IF_ERROR(Round("all-gather", n));
    for (int p = 0; p < world_; ++p)
      std::memcpy(out + p * n + offset, p == rank_ ? in + offset : Buffer(p, round_), count * sizeof(float));
  }
  return Status::Ok();
}

Status ShmCommunicator::Barrier() {
  if (!broken_.ok()) return broken_;
  if (world_ == 1) return Status::Ok();
  return Round("barrier", 0);
}

}  // namespace flover
