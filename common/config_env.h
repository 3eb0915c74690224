// Environment expansion of config values: every scalar of a cluster YAML file goes
// through ExpandEnv before it is interpreted, so one file serves many hosts
// (`host: ${NODE_IP}`, `path: ${FLOVER_MODELS_DIR:-/models}/m.bin`).
//
//   ${VAR}           the value of VAR; an error when VAR is unset
//   ${VAR:-default}  the value of VAR, or `default` when VAR is unset or empty
//   $$               a literal '$'
//   any other '$'    kept as is ("$x", a trailing "$")
//
// VAR is [A-Za-z_][A-Za-z0-9_]*. Thread-safety: reads the environment (getenv).
#pragma once

#include <string>

#include "common/status.h"

namespace flover {

// `text` expanded; InvalidArgument with the reason ("environment variable X is not
// set ...", "unterminated '${' in ...") otherwise, without a file or key: the caller
// adds them.
Result<std::string> ExpandEnv(const std::string& text);

// `text` with every '$' doubled, so that ExpandEnv(EscapeEnv(text)) == text.
std::string EscapeEnv(const std::string& text);

}  // namespace flover
