// Reading a whole file into memory, with a bound on its size (tokenizer files and
// configs that are parsed in memory).
//
// Thread-safety: a free function; no shared state.
#pragma once

#include <cstddef>
#include <string>

#include "common/status.h"

namespace flover {

// The bytes of `path`. `what` names the file in messages ("tokenizer file"): NotFound
// when it does not exist, IoError when it cannot be opened or read (or is a folder),
// InvalidArgument when it is larger than `max_bytes`.
Result<std::string> ReadFileBytes(const std::string& path, size_t max_bytes, const std::string& what);

}  // namespace flover
