// CURVE keys (CurveZMQ: libzmq's CURVE mechanism, Curve25519) and the files that hold
// them (docs/security.md).
//
// A key is 32 bytes, written in Z85 (40 characters, ZeroMQ's text form). Two file kinds,
// both small text files of "name: value" lines; blank lines and lines starting with '#'
// are ignored:
//
//   NAME.key   the key pair: mode 0600, readable by its owner only
//     # Flover CURVE key pair 'NAME' ...
//     public-key: rq:rM>}U?@Lns47E1%kR.o@n%FcmmsL/@{H8]yf7
//     secret-key: JTKVSB%%)wK0E.X)V>+}o?pNmC{O&4W4b!Ni{Lh6
//   NAME.pub   the public key alone: what peers pin (the coordinator's) or admit
//     # Flover CURVE public key 'NAME' ...
//     public-key: rq:rM>}U?@Lns47E1%kR.o@n%FcmmsL/@{H8]yf7
//
// Readers reject a malformed file with an error naming the file and the line ("keys/a.pub:
// line 2: 'public-key' must be 40 Z85 characters, got 12"), an unknown or repeated name,
// a missing key, and a key pair whose public key is not the one of its secret key. Like
// ssh, a key pair file that its group or others may access is refused
// (PermissionDenied, with the chmod that fixes it).
//
// Thread-safety: value types and functions of their arguments (and the file system).
#pragma once

#include <array>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "common/status.h"

namespace flover {

inline constexpr size_t kCurveKeyBytes = 32;
inline constexpr size_t kCurveKeyZ85Chars = 40;

struct CurvePublicKey {
  std::array<uint8_t, kCurveKeyBytes> bytes{};

  std::string Z85() const;
  // The 32 bytes as a string (what a ZAP request carries).
  std::string Binary() const { return std::string(bytes.begin(), bytes.end()); }
  bool operator==(const CurvePublicKey&) const = default;
  auto operator<=>(const CurvePublicKey&) const = default;
};

// A secret key; its memory is wiped when it is destroyed.
struct CurveSecretKey {
  std::array<uint8_t, kCurveKeyBytes> bytes{};

  CurveSecretKey() = default;
  CurveSecretKey(const CurveSecretKey&) = default;
  CurveSecretKey& operator=(const CurveSecretKey&) = default;
  ~CurveSecretKey();
  std::string Z85() const;
};

struct CurveKeyPair {
  CurvePublicKey public_key;
  CurveSecretKey secret_key;
};

// A public key and where it came from: `name` is the file name without ".pub".
struct NamedCurveKey {
  std::string name;
  std::string path;
  CurvePublicKey key;
};

// 40 Z85 characters -> a key; InvalidArgument saying what is wrong otherwise.
Result<CurvePublicKey> ParseZ85PublicKey(std::string_view text);

// A fresh key pair (zmq_curve_keypair). Internal when libzmq has no CURVE.
Result<CurveKeyPair> GenerateCurveKeyPair();

// Writes `prefix`.key (the pair, created with O_EXCL and mode 0600, so it is never
// readable by others, not even for a moment) and `prefix`.pub (mode 0644), creating the
// missing folders of `prefix`. Never overwrites: an existing file is InvalidArgument and
// nothing is written. The key name in the files' comments is the last part of `prefix`.
Status WriteCurveKeyFiles(const std::string& prefix, const CurveKeyPair& pair);

// Reads a key pair file. PermissionDenied when its group or others may access it;
// NotFound, IoError, or InvalidArgument "<path>: line N: ..." for a malformed file.
Result<CurveKeyPair> LoadCurveKeyPair(const std::string& path);

// Reads a public key file (one without a secret key: a key pair file is refused, so a
// secret never travels as a public key by mistake).
Result<CurvePublicKey> LoadCurvePublicKey(const std::string& path);

// The public keys of `path`: every "*.pub" file of a folder (not its subfolders; other
// files are ignored), sorted by name, or the one file `path` names. A folder without
// .pub files gives an empty list. Any malformed .pub file fails the whole load.
Result<std::vector<NamedCurveKey>> LoadCurvePublicKeys(const std::string& path);

}  // namespace flover
