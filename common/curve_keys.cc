#include "common/curve_keys.h"

#include <cstring>
#include <fcntl.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <filesystem>
#include <initializer_list>
#include <map>
#include <optional>

#include <zmq.h>

namespace flover {
namespace {

namespace fs = std::filesystem;

constexpr std::string_view kZ85Alphabet =
    "0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ.-:+=^!/*?&<>()[]{}@%$#";
constexpr off_t kMaxKeyFileBytes = 64 << 10;  // a key file is ~200 bytes; more is not one
constexpr const char* kPublicName = "public-key";
constexpr const char* kSecretName = "secret-key";

std::string Errno(int error) { return std::strerror(error); }

std::string Octal(mode_t mode) {
  char text[8];
  std::snprintf(text, sizeof(text), "%04o", static_cast<unsigned>(mode & 07777));
  return text;
}

// 40 Z85 characters -> 32 bytes; `what` names the value in errors.
Result<std::array<uint8_t, kCurveKeyBytes>> DecodeZ85(std::string_view text, const std::string& what) {
  if (text.size() != kCurveKeyZ85Chars) {
    return InvalidArgument(what + " must be " + std::to_string(kCurveKeyZ85Chars) + " Z85 characters, got " +
                           std::to_string(text.size()));
  }
  for (char c : text) {
    if (kZ85Alphabet.find(c) == std::string_view::npos)
      return InvalidArgument(what + " has a character that is not Z85: '" + std::string(1, c) + "'");
  }
  const std::string terminated(text);
  std::array<uint8_t, kCurveKeyBytes> bytes{};
  if (zmq_z85_decode(bytes.data(), terminated.c_str()) == nullptr)
    return InvalidArgument(what + " is not a valid Z85 key");
  return bytes;
}

std::string EncodeZ85(const std::array<uint8_t, kCurveKeyBytes>& bytes) {
  char text[kCurveKeyZ85Chars + 1] = {};
  FLOVER_CHECK(zmq_z85_encode(text, bytes.data(), bytes.size()) != nullptr) << "zmq_z85_encode failed";
  return std::string(text, kCurveKeyZ85Chars);
}

// The "name: value" lines of a key file; InvalidArgument "<path>: line N: ..." for a
// line that is not one, an unknown or repeated name. `allowed`: the names it may hold.
struct KeyLines {
  std::map<std::string, std::pair<std::string, int>> values;  // name -> (value, line)
};

Result<KeyLines> ParseKeyLines(const std::string& path, const std::string& text,
                               std::initializer_list<const char*> allowed) {
  KeyLines out;
  int line_no = 0;
  size_t start = 0;
  while (start < text.size()) {
    size_t end = text.find('\n', start);
    if (end == std::string::npos) end = text.size();
    std::string line = text.substr(start, end - start);
    start = end + 1;
    ++line_no;
    if (!line.empty() && line.back() == '\r') line.pop_back();
    const size_t first = line.find_first_not_of(" \t");
    if (first == std::string::npos || line[first] == '#') continue;
    auto error = [&](const std::string& what) {
      return InvalidArgument(path + ": line " + std::to_string(line_no) + ": " + what);
    };
    const size_t colon = line.find(':');
    if (colon == std::string::npos)
      return error("expected 'public-key: <Z85>' or a '#' comment, got '" + line.substr(0, 80) + "'");
    std::string name = line.substr(0, colon);
    std::string value = line.substr(colon + 1);
    auto trim = [](std::string& s) {
      const size_t b = s.find_first_not_of(" \t");
      const size_t e = s.find_last_not_of(" \t");
      s = b == std::string::npos ? "" : s.substr(b, e - b + 1);
    };
    trim(name);
    trim(value);
    const bool known = std::any_of(allowed.begin(), allowed.end(), [&](const char* a) { return name == a; });
    if (!known) {
      std::string names;
      for (const char* a : allowed) names += std::string(names.empty() ? "" : " or ") + "'" + a + "'";
      if (name == kSecretName) return error("a secret key has no place in a public key file");
      return error("unknown name '" + name.substr(0, 40) + "' (expected " + names + ")");
    }
    if (out.values.count(name)) return error("'" + name + "' is given twice");
    Result<std::array<uint8_t, kCurveKeyBytes>> decoded = DecodeZ85(value, "'" + name + "'");
    if (!decoded.ok()) return error(decoded.status().message());
    out.values[name] = {value, line_no};
  }
  return out;
}

// The text of a small key file, opened once (the mode is checked on the file read, not
// on a path that could change in between). `secret`: refuse any access by group/others.
Result<std::string> ReadKeyFile(const std::string& path, bool secret) {
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    const int error = errno;
    if (error == ENOENT) return NotFound(path + ": key file not found");
    return IoError(path + ": cannot open the key file: " + Errno(error));
  }
  struct FdCloser {
    int fd;
    ~FdCloser() { ::close(fd); }
  } closer{fd};
  struct stat st {};
  if (::fstat(fd, &st) != 0) return IoError(path + ": cannot stat the key file: " + Errno(errno));
  if (!S_ISREG(st.st_mode)) return InvalidArgument(path + ": not a regular file");
  if (secret && (st.st_mode & 077) != 0) {
    return PermissionDenied(path + ": permissions " + Octal(st.st_mode) +
                            " are too open: a secret key must be readable by its owner only; run chmod 600 " + path);
  }
  if (st.st_size > kMaxKeyFileBytes)
    return InvalidArgument(path + ": " + std::to_string(st.st_size) + " bytes is too large for a key file");
  std::string text(static_cast<size_t>(st.st_size), '\0');
  size_t done = 0;
  while (done < text.size()) {
    const ssize_t n = ::read(fd, text.data() + done, text.size() - done);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return IoError(path + ": cannot read the key file: " + Errno(errno));
    if (n == 0) break;
    done += static_cast<size_t>(n);
  }
  text.resize(done);
  return text;
}

// Writes `text` to a new file `path` with `mode`; never replaces one.
Status WriteNewFile(const std::string& path, const std::string& text, mode_t mode) {
  const int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, mode);
  if (fd < 0) {
    const int error = errno;
    if (error == EEXIST) return InvalidArgument(path + " exists already; remove it first or choose another name");
    return IoError(path + ": cannot create: " + Errno(error));
  }
  size_t done = 0;
  while (done < text.size()) {
    const ssize_t n = ::write(fd, text.data() + done, text.size() - done);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) {
      const int error = errno;
      ::close(fd);
      ::unlink(path.c_str());
      return IoError(path + ": cannot write: " + Errno(error));
    }
    done += static_cast<size_t>(n);
  }
  if (::fsync(fd) != 0 || ::close(fd) != 0) {
    const int error = errno;
    ::unlink(path.c_str());
    return IoError(path + ": cannot write: " + Errno(error));
  }
  return Status::Ok();
}

bool Exists(const std::string& path) {
  struct stat st {};
  return ::lstat(path.c_str(), &st) == 0;
}

}  // namespace

std::string CurvePublicKey::Z85() const { return EncodeZ85(bytes); }

CurveSecretKey::~CurveSecretKey() { explicit_bzero(bytes.data(), bytes.size()); }

std::string CurveSecretKey::Z85() const { return EncodeZ85(bytes); }

Result<CurvePublicKey> ParseZ85PublicKey(std::string_view text) {
  CurvePublicKey key;
  FLOVER_ASSIGN_OR_RETURN(key.bytes, DecodeZ85(text, "a public key"));
  return key;
}

Result<CurveKeyPair> GenerateCurveKeyPair() {
  char public_z85[kCurveKeyZ85Chars + 1] = {};
  char secret_z85[kCurveKeyZ85Chars + 1] = {};
  if (zmq_curve_keypair(public_z85, secret_z85) != 0)
    return Internal(std::string("zmq_curve_keypair failed (is libzmq built with CURVE?): ") +
                    zmq_strerror(zmq_errno()));
  CurveKeyPair pair;
  FLOVER_ASSIGN_OR_RETURN(pair.public_key.bytes, DecodeZ85(public_z85, "the new public key"));
  FLOVER_ASSIGN_OR_RETURN(pair.secret_key.bytes, DecodeZ85(secret_z85, "the new secret key"));
  explicit_bzero(secret_z85, sizeof(secret_z85));
  return pair;
}

Status WriteCurveKeyFiles(const std::string& prefix, const CurveKeyPair& pair) {
  const std::string key_path = prefix + ".key";
  const std::string pub_path = prefix + ".pub";
  const std::string name = fs::path(prefix).filename().string();
  if (name.empty()) return InvalidArgument("--out " + prefix + " names no key (expected DIR/NAME)");
  for (const std::string& path : {key_path, pub_path}) {
    if (Exists(path)) return InvalidArgument(path + " exists already; remove it first or choose another name");
  }
  const fs::path dir = fs::path(prefix).parent_path();
  if (!dir.empty()) {
    std::error_code ec;
    fs::create_directories(dir, ec);
    if (ec) return IoError(dir.string() + ": cannot create the folder: " + ec.message());
  }
  std::string secret_text = "# Flover CURVE key pair '" + name + "': keep it secret (mode 0600); give out " + name +
                            ".pub instead\n" + kPublicName + ": " + pair.public_key.Z85() + "\n" + kSecretName + ": " +
                            pair.secret_key.Z85() + "\n";
  const Status written = WriteNewFile(key_path, secret_text, 0600);
  explicit_bzero(secret_text.data(), secret_text.size());
  FLOVER_RETURN_IF_ERROR(written);
  const std::string public_text = "# Flover CURVE public key '" + name + "' (its key pair is " + name + ".key)\n" +
                                  kPublicName + ": " + pair.public_key.Z85() + "\n";
  if (Status s = WriteNewFile(pub_path, public_text, 0644); !s.ok()) {
    ::unlink(key_path.c_str());
    return s;
  }
  return Status::Ok();
}

Result<CurveKeyPair> LoadCurveKeyPair(const std::string& path) {
  FLOVER_ASSIGN_OR_RETURN(std::string text, ReadKeyFile(path, /*secret=*/true));
  Result<KeyLines> lines = ParseKeyLines(path, text, {kPublicName, kSecretName});
  explicit_bzero(text.data(), text.size());
  if (!lines.ok()) return lines.status();
  for (const char* name : {kPublicName, kSecretName}) {
    if (!lines->values.count(name))
      return InvalidArgument(path + ": no '" + name + ": <Z85>' line (is it a key pair file, NAME.key?)");
  }
  const auto& [secret_z85, secret_line] = lines->values[kSecretName];
  const auto& [public_z85, public_line] = lines->values[kPublicName];
  char derived[kCurveKeyZ85Chars + 1] = {};
  if (zmq_curve_public(derived, secret_z85.c_str()) != 0)
    return Internal(path + ": zmq_curve_public failed: " + zmq_strerror(zmq_errno()));
  if (public_z85 != derived) {
    return InvalidArgument(path + ": line " + std::to_string(public_line) +
                           ": the public key is not the one of the secret key on line " + std::to_string(secret_line) +
                           " (the file was edited or mixed up)");
  }
  CurveKeyPair pair;
  FLOVER_ASSIGN_OR_RETURN(pair.public_key.bytes, DecodeZ85(public_z85, "public-key"));
  FLOVER_ASSIGN_OR_RETURN(pair.secret_key.bytes, DecodeZ85(secret_z85, "secret-key"));
  explicit_bzero(lines->values[kSecretName].first.data(), kCurveKeyZ85Chars);
  return pair;
}

Result<CurvePublicKey> LoadCurvePublicKey(const std::string& path) {
  FLOVER_ASSIGN_OR_RETURN(std::string text, ReadKeyFile(path, /*secret=*/false));
  FLOVER_ASSIGN_OR_RETURN(KeyLines lines, ParseKeyLines(path, text, {kPublicName}));
  if (!lines.values.count(kPublicName)) return InvalidArgument(path + ": no 'public-key: <Z85>' line");
  return ParseZ85PublicKey(lines.values[kPublicName].first);
}

Result<std::vector<NamedCurveKey>> LoadCurvePublicKeys(const std::string& path) {
  std::error_code ec;
  const fs::file_status status = fs::status(path, ec);
  if (ec || !fs::exists(status)) return NotFound(path + ": no such key file or folder");
  std::vector<std::string> files;
  if (fs::is_directory(status)) {
    for (fs::directory_iterator it(path, ec), end; !ec && it != end; it.increment(ec)) {
      if (it->path().extension() == ".pub") files.push_back(it->path().string());
    }
    if (ec) return IoError(path + ": cannot list the folder: " + ec.message());
    std::sort(files.begin(), files.end());
  } else {
    files.push_back(path);
  }
  std::vector<NamedCurveKey> keys;
  for (const std::string& file : files) {
    FLOVER_ASSIGN_OR_RETURN(CurvePublicKey key, LoadCurvePublicKey(file));
    std::string name = fs::path(file).filename().string();
    if (name.size() > 4 && name.compare(name.size() - 4, 4, ".pub") == 0) name.resize(name.size() - 4);
    keys.push_back(NamedCurveKey{std::move(name), file, key});
  }
  return keys;
}

}  // namespace flover
