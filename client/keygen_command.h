// `flover keygen --out DIR/NAME`: makes a CURVE key pair (docs/security.md) and writes
// DIR/NAME.key (public and secret key; mode 0600, never readable by others) and
// DIR/NAME.pub (the public key, to give to the peers that admit or pin it). Refuses to
// overwrite either file. Prints the paths and the public key; exit 0, or 1 with the
// reason on stderr.
#pragma once

#include <string>

namespace flover {

struct KeygenOptions {
  std::string out;  // DIR/NAME, without an extension
};

int KeygenCommand(const KeygenOptions& options);

}  // namespace flover
