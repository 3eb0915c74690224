// Admission: turns what a client sent into RequestParams the scheduler can run, or into
// the error the client gets at once. Bad requests never reach a worker.
//
// Checks, in order (the first failure is the answer):
//   0. the sizes a client controls, against the config's `limits:` (docs/limits.md),
//      before anything is copied or tokenized: InvalidArgument naming the key and the
//      value when client_request_id has more than max_request_id_bytes, a text prompt
//      more than max_prompt_bytes, a token-id prompt more than max_prompt_tokens, the
//      stop conditions more than max_stop_ids ids or max_stop_strings strings, or a
//      stop string more than max_stop_string_bytes;
//   1. client_request_id is non-empty and not in flight on this connection;
//   2. a prompt is given; text is tokenized with the cluster's tokenizer (BOS added),
//      token ids are used as given; "this cluster has no tokenizer: send token ids";
//      text too long for the model's context whatever its tokens (more bytes than
//      max_seq_len tokens of the longest piece) is refused before it is tokenized, so
//      that a huge prompt cannot hold up the coordinator's loop;
//   3. when the model is known: ValidateRequest (prompt length, ids in the vocabulary,
//      max_tokens >= 1, sampling ranges), then ResourceExhausted when the request could
//      never fit in the smallest replica's KV pool (MaxKvPositions, request_params.h);
//   4. stop strings: a tokenizer, and none empty;
//   5. ResourceExhausted when this connection already has limits.max_requests_per_client
//      requests in flight (queued or running), or "overloaded ..." when max_queued
//      requests are already waiting.
// Before any replica is ready the model is unknown: the coordinator queues the request
// and runs step 3 (CheckAgainstModel) once a replica reports the model.
//
// Thread-safety: pure functions.
#pragma once

#include <cstdint>
#include <string_view>

#include "common/cluster_config.h"
#include "common/model_spec.h"
#include "common/request_params.h"
#include "common/status.h"
#include "common/tokenizer.h"
#include "flover.pb.h"

namespace flover {

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
  int client_in_flight = 0;              // requests queued or running on this connection now
  LimitsSettings limits;                 // the config's limits:
};

// Checks 0-5 above; the params the scheduler runs.
Result<RequestParams> Admit(const proto::SubmitRequest& submit, const AdmissionContext& context);

// Check 3 alone (for requests queued before the model was known).
Status CheckAgainstModel(const RequestParams& request, const ModelSpec& model, int64_t kv_capacity_tokens);

// A client_request_id as replies may echo it: at most `max_bytes` bytes (its start, cut
// at a character boundary), so that an error about an oversized id does not send the id
// back whole. REQUIRES: max_bytes >= 0; `id` is valid UTF-8 (as every parsed string is).
std::string EchoedRequestId(const std::string& id, int max_bytes);

}  // namespace flover
