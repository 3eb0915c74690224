// The JSON of `flover status --json`: one object, snake_case names, numbers as JSON
// numbers, seconds in fields ending in `_s`, in the style of `flover bench --json`
// (README.md, "flover status"). Fields:
//   name, uptime_s, model {description, dim, hidden_dim, n_layers, n_heads, n_kv_heads,
//   vocab_size, max_seq_len, bos_id, eos_id} (null before a replica was ready),
//   replicas_ready, queued, completed, moved, abandoned, rejected_messages,
//   clients_cut_off,
//   latency {window_s, requests, queue_s, ttft_s, tpot_s, e2e_s: {mean, p50, p90, p99}},
//   replicas [{replica, state, error, running, waiting, kv_blocks_used, kv_blocks_total,
//              steps_per_s, tokens_per_s, steps, tokens_generated, step_compute_s,
//              workers [{rank, state, device, last_heartbeat_age_s, host, pid}]}]
// (host and pid as the coordinator shows them: empty and 0 for a client that is no admin).
#pragma once

#include <string>

#include "flover.pb.h"

namespace flover {

std::string StatusJson(const proto::ClusterStatus& status);

}  // namespace flover
