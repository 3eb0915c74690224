#include "client/keygen_command.h"

#include <cstdio>

#include "common/curve_keys.h"

namespace flover {

int KeygenCommand(const KeygenOptions& o) {
  std::string prefix = o.out;
  for (const char* extension : {".key", ".pub"}) {
    const std::string ext = extension;
    if (prefix.size() > ext.size() && prefix.compare(prefix.size() - ext.size(), ext.size(), ext) == 0)
      prefix.resize(prefix.size() - ext.size());
  }
  Result<CurveKeyPair> pair = GenerateCurveKeyPair();
  Status written = pair.ok() ? WriteCurveKeyFiles(prefix, *pair) : pair.status();
  if (!written.ok()) {
    std::fprintf(stderr, "flover keygen: %s\n", written.ToString().c_str());
    return 1;
  }
  std::printf("wrote %s.key (key pair, mode 0600: keep it secret) and %s.pub (public key)\npublic key: %s\n",
              prefix.c_str(), prefix.c_str(), pair->public_key.Z85().c_str());
  return 0;
}

}  // namespace flover
