// Fuzzes what clients send to the coordinator: CoordinatorCore::OnClientMessage, from
// the frames of a message to the decisions (admission, tokenization, scheduling, stop
// strings, cancellation, status) and what goes back. The cluster: FuzzCluster with two
// ready replicas, whose scripted workers answer every plan.
//
// Input: records (fuzz_records.h), each one message from one of four clients. The op
// byte: bits 0-1 the client; bits 2-3 how it is sent: 0 one frame (the payload), 1 two
// frames (the payload cut in half), 2 no frame, 3 one frame and then the client's
// connection closes; bits 4-5 how many plans per replica the workers answer afterwards
// (0, 1, 3, 8); bits 6-7 the simulated time to let pass then (0, 10, 60, 500 ms). At the
// end of the input the requests left run to their end, a client asks for the status,
// and the coordinator stops (drain, then shutdown).
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "tests/fuzz/core_fuzz_cluster.h"
#include "tests/fuzz/fuzz_records.h"

using namespace flover;
using namespace flover::fuzzing;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  FuzzCluster cluster(FuzzCluster::Shape{.replicas = 2, .tensor = 1});
  TokenSource tokens("", cluster.vocab_size());
  RecordReader reader(data, size);
  for (Record r; reader.Next(&r);) {
    SimClient& client = cluster.client(r.op & 3);
    const int mode = (r.op >> 2) & 3;
    std::vector<std::string> frames;
    if (mode == 0 || mode == 3) frames = {std::string(r.payload)};
    if (mode == 1) {
      const size_t half = r.payload.size() / 2;
      frames = {std::string(r.payload.substr(0, half)), std::string(r.payload.substr(half))};
    }
    client.SendFrames(frames);
    if (mode == 3) cluster.DisconnectClient(r.op & 3);
    static constexpr int kAnswers[] = {0, 1, 3, 8};
    static constexpr int kWaitMs[] = {0, 10, 60, 500};
    cluster.AnswerPlans(tokens, kAnswers[(r.op >> 4) & 3]);
    if (const int wait_ms = kWaitMs[r.op >> 6]; wait_ms > 0) cluster.sim().Advance(std::chrono::milliseconds(wait_ms));
    cluster.CheckReceived();
  }
  cluster.Finish(tokens, 200);
  return 0;
}
