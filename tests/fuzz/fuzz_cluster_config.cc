// Fuzzes the YAML cluster config reader: ParseClusterConfig on arbitrary text (yaml-cpp,
// the key checks, integer and number parsing, ${VAR} expansion, path resolution,
// ClusterConfig::Validate). A config it accepts must come back equal through both of
// its other forms, as their headers promise: the YAML the writer makes of it
// (ParseClusterConfig(ToYaml(c)) == c) and the wire form the workers get, serialized
// and parsed (FromProto(ToProto(c)) == c, but for the security section and
// http.api_keys, which never go to the workers); a difference aborts, as a finding.
//
// Input: the file's text. Dictionary: cluster_config.dict (keys and enum values).
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>

#include "common/cluster_config_proto.h"
#include "common/cluster_config_reader.h"
#include "common/cluster_config_writer.h"

using namespace flover;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string text(reinterpret_cast<const char*>(data), size);
  Result<ClusterConfig> config = ParseClusterConfig(text, "fuzz.yaml", "/fuzz/configs");
  if (!config.ok()) return 0;

  const std::string yaml = ToYaml(*config);
  Result<ClusterConfig> reread = ParseClusterConfig(yaml, config->source, "");
  if (!reread.ok() || !(*reread == *config)) {
    std::fprintf(stderr, "the writer's YAML does not read back equal: %s\n--- written:\n%s\n",
                 reread.ok() ? "a different config" : reread.status().ToString().c_str(), yaml.c_str());
    std::abort();
  }
  // As a worker receives it: serialized, parsed (string fields must be UTF-8), checked.
  proto::ClusterConfig wire;
  if (!wire.ParseFromString(ToProto(*config).SerializeAsString())) {
    std::fprintf(stderr, "the wire form does not parse\n");
    std::abort();
  }
  Result<ClusterConfig> from_wire = FromProto(wire);
  ClusterConfig without_keys = *config;
  without_keys.security = {};
  without_keys.http.api_keys = {};  // never on the wire either
  if (!from_wire.ok() || !(*from_wire == without_keys)) {
    std::fprintf(stderr, "the wire form does not read back equal: %s\n",
                 from_wire.ok() ? "a different config" : from_wire.status().ToString().c_str());
    std::abort();
  }
  return 0;
}
