// Admission: turns what a client sent into RequestParams the scheduler can run, or into
// the error the client gets at once. Bad requests never reach a worker.
//
// Checks, in order (the first failure is the answer):
//   1. client_request_id is non-empty and not in flight on this connection;
//   2. a prompt is given; text is tokenized with the cluster's tokenizer (BOS added),
//      token ids are used as given; "this cluster has no tokenizer: send token ids";
//      text too long for the model's context whatever its tokens (more bytes than
//      max_seq_len tokens of the longest piece) is refused before it is tokenized, so
//      that a huge prompt cannot hold up the coordinator's loop;
//   3. when the model is known: ValidateRequest (prompt length, ids in the vocabulary,
//      max_tokens >= 1, sampling ranges), then ResourceExhausted when the request could
//      never fit in the smallest replica's KV pool (MaxKvPositions, request_params.h);
//   4. stop strings: a tokenizer, at most kMaxStopStrings of 1..kMaxStopStringBytes bytes;
//   5. ResourceExhausted "overloaded ..." when max_queued requests are already waiting.
// Before any replica is ready the model is unknown: the coordinator queues the request
// and runs step 3 (CheckAgainstModel) once a replica reports the model.
//
// Thread-safety: pure functions.
#pragma once

#include <cstdint>
#include <string_view>

#include "common/model_spec.h"
#include "common/request_params.h"
#include "common/status.h"
#include "common/tokenizer.h"
#include "flover.pb.h"

namespace flover {

inline constexpr int kMaxStopStrings = 16;
inline constexpr int kMaxStopStringBytes = 256;

// Reads a ClientMessage off the wire: protocol version checked, unknown fields (at any
// depth) rejected, a message without a body rejected.
Result<proto::ClientMessage> ParseClientMessage(std::string_view bytes);

struct AdmissionContext {
  const Tokenizer* tokenizer = nullptr;  // nullptr: text prompts are refused
  const ModelSpec* model = nullptr;      // nullptr: no replica has reported the model yet
  int64_t kv_capacity_tokens = 0;        // KV slots of the smallest replica pool; used with model
  bool id_in_flight = false;             // client_request_id already in flight on this connection
  int n_queued = 0;                      // requests waiting for admission now
  int max_queued = 1024;                 // scheduler.max_queued
};

// Checks 1-4 above; the params the scheduler runs.
Result<RequestParams> Admit(const proto::SubmitRequest& submit, const AdmissionContext& context);

// Check 3 alone (for requests queued before the model was known).
Status CheckAgainstModel(const RequestParams& request, const ModelSpec& model, int64_t kv_capacity_tokens);

}  // namespace flover
