// CURVE key files: what WriteCurveKeyFiles writes (modes included) reads back; every
// kind of malformed file is refused with its file and line; a key pair file others may
// read is refused with the chmod that fixes it; nothing is ever overwritten.
#include "common/curve_keys.h"

#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <string>

namespace flover {
namespace {

namespace fs = std::filesystem;

class CurveKeysTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/flover-keys-test-XXXXXX";
    ASSERT_NE(mkdtemp(tmpl), nullptr);
    dir_ = tmpl;
  }
  void TearDown() override { fs::remove_all(dir_); }

  std::string Write(const std::string& name, const std::string& text, mode_t mode = 0600) {
    const std::string path = dir_ + "/" + name;
    std::ofstream(path) << text;
    EXPECT_EQ(chmod(path.c_str(), mode), 0);
    return path;
  }
  static mode_t Mode(const std::string& path) {
    struct stat st {};
    EXPECT_EQ(stat(path.c_str(), &st), 0) << path;
    return st.st_mode & 07777;
  }

  std::string dir_;
};

CurveKeyPair NewPair() {
  Result<CurveKeyPair> pair = GenerateCurveKeyPair();
  EXPECT_TRUE(pair.ok()) << pair.status().ToString();
  return *pair;
}

TEST_F(CurveKeysTest, WrittenFilesReadBackWithTheirModes) {
  const CurveKeyPair pair = NewPair();
  ASSERT_TRUE(WriteCurveKeyFiles(dir_ + "/sub/coordinator", pair).ok());
  const std::string key = dir_ + "/sub/coordinator.key", pub = dir_ + "/sub/coordinator.pub";
  EXPECT_EQ(Mode(key), 0600u);
  EXPECT_EQ(Mode(pub) & 0600, 0600u);
  Result<CurveKeyPair> read = LoadCurveKeyPair(key);
  ASSERT_TRUE(read.ok()) << read.status().ToString();
  EXPECT_EQ(read->public_key, pair.public_key);
  EXPECT_EQ(read->secret_key.bytes, pair.secret_key.bytes);
  Result<CurvePublicKey> public_key = LoadCurvePublicKey(pub);
  ASSERT_TRUE(public_key.ok()) << public_key.status().ToString();
  EXPECT_EQ(*public_key, pair.public_key);
  // The files say what they are on their first line.
  std::ifstream in(key);
  std::string first;
  std::getline(in, first);
  EXPECT_EQ(first.rfind("# Flover CURVE key pair 'coordinator'", 0), 0u) << first;
}

TEST_F(CurveKeysTest, KeyFileIsCreatedPrivateEvenUnderAPermissiveUmask) {
  const mode_t saved = umask(0);
  const Status written = WriteCurveKeyFiles(dir_ + "/a", NewPair());
  umask(saved);
  ASSERT_TRUE(written.ok()) << written.ToString();
  EXPECT_EQ(Mode(dir_ + "/a.key"), 0600u);
}

TEST_F(CurveKeysTest, NeverOverwrites) {
  ASSERT_TRUE(WriteCurveKeyFiles(dir_ + "/a", NewPair()).ok());
  const Result<CurveKeyPair> before = LoadCurveKeyPair(dir_ + "/a.key");
  ASSERT_TRUE(before.ok());
  const Status again = WriteCurveKeyFiles(dir_ + "/a", NewPair());
  EXPECT_EQ(again.code(), StatusCode::kInvalidArgument);
  EXPECT_NE(again.message().find("a.key exists already"), std::string::npos) << again.ToString();
  EXPECT_EQ(LoadCurveKeyPair(dir_ + "/a.key")->public_key, before->public_key);
  // An existing .pub alone also stops it, before the .key is written.
  Write("b.pub", "x\n", 0644);
  const Status b = WriteCurveKeyFiles(dir_ + "/b", NewPair());
  EXPECT_NE(b.message().find("b.pub exists already"), std::string::npos) << b.ToString();
  EXPECT_FALSE(fs::exists(dir_ + "/b.key"));
}

TEST_F(CurveKeysTest, KeyPairReadableByOthersIsRefusedWithTheFix) {
  ASSERT_TRUE(WriteCurveKeyFiles(dir_ + "/w", NewPair()).ok());
  const std::string key = dir_ + "/w.key";
  for (mode_t mode : {0640, 0604, 0660, 0644}) {
    ASSERT_EQ(chmod(key.c_str(), mode), 0);
    const Result<CurveKeyPair> read = LoadCurveKeyPair(key);
    EXPECT_EQ(read.status().code(), StatusCode::kPermissionDenied) << std::oct << mode;
    EXPECT_NE(read.status().message().find("chmod 600 " + key), std::string::npos) << read.status().ToString();
  }
  ASSERT_EQ(chmod(key.c_str(), 0400), 0);  // read-only for the owner (Kubernetes Secrets) is fine
  EXPECT_TRUE(LoadCurveKeyPair(key).ok());
}

TEST_F(CurveKeysTest, MalformedFilesNameFileAndLine) {
  const CurveKeyPair pair = NewPair();
  const std::string pub = "public-key: " + pair.public_key.Z85() + "\n";
  const std::string sec = "secret-key: " + pair.secret_key.Z85() + "\n";
  const CurveKeyPair other = NewPair();
  struct Case {
    std::string text;
    std::string message;
  };
  const Case cases[] = {
      {"# c\n" + pub + "garbage\n", "line 3: expected 'public-key: <Z85>'"},
      {pub + "public-key: " + pair.public_key.Z85() + "\n" + sec, "line 2: 'public-key' is given twice"},
      {"# c\npublic-key: abc\n" + sec, "line 2: 'public-key' must be 40 Z85 characters, got 3"},
      {pub + "secret-key: " + std::string(39, 'a') + "~\n", "line 2: 'secret-key' has a character that is not Z85"},
      {pub + sec + "owner: me\n", "line 3: unknown name 'owner'"},
      {pub, "no 'secret-key: <Z85>' line"},
      {"\n\n# only comments\n", "no 'public-key: <Z85>' line"},
      {"public-key: " + other.public_key.Z85() + "\n" + sec, "line 1: the public key is not the one of the secret key"},
  };
  for (const Case& c : cases) {
    const std::string path = Write("bad.key", c.text);
    const Result<CurveKeyPair> read = LoadCurveKeyPair(path);
    ASSERT_FALSE(read.ok()) << c.text;
    EXPECT_EQ(read.status().message().rfind(path + ": ", 0), 0u) << read.status().ToString();
    EXPECT_NE(read.status().message().find(c.message), std::string::npos) << read.status().ToString();
    fs::remove(path);
  }
  // A public key file with a secret in it is refused: it would give the secret away.
  const std::string leaked = Write("leak.pub", pub + sec, 0644);
  const Result<CurvePublicKey> read = LoadCurvePublicKey(leaked);
  EXPECT_NE(read.status().message().find(leaked + ": line 2: a secret key has no place in a public key file"),
            std::string::npos)
      << read.status().ToString();
  EXPECT_EQ(LoadCurvePublicKey(dir_ + "/missing.pub").status().code(), StatusCode::kNotFound);
  EXPECT_NE(LoadCurvePublicKey(dir_).status().message().find("not a regular file"), std::string::npos);
}

TEST_F(CurveKeysTest, FolderOfPublicKeys) {
  const CurveKeyPair a = NewPair(), b = NewPair();
  ASSERT_TRUE(WriteCurveKeyFiles(dir_ + "/clients/alice", a).ok());
  ASSERT_TRUE(WriteCurveKeyFiles(dir_ + "/clients/bob", b).ok());
  Write("clients/README", "not a key\n", 0644);
  Result<std::vector<NamedCurveKey>> keys = LoadCurvePublicKeys(dir_ + "/clients");
  ASSERT_TRUE(keys.ok()) << keys.status().ToString();
  ASSERT_EQ(keys->size(), 2u);
  EXPECT_EQ((*keys)[0].name, "alice");
  EXPECT_EQ((*keys)[0].key, a.public_key);
  EXPECT_EQ((*keys)[1].name, "bob");
  EXPECT_EQ((*keys)[1].key, b.public_key);
  // One file names one key.
  Result<std::vector<NamedCurveKey>> one = LoadCurvePublicKeys(dir_ + "/clients/bob.pub");
  ASSERT_TRUE(one.ok());
  ASSERT_EQ(one->size(), 1u);
  EXPECT_EQ((*one)[0].key, b.public_key);
  // One bad file fails the folder, naming it.
  Write("clients/carol.pub", "public-key: nope\n", 0644);
  keys = LoadCurvePublicKeys(dir_ + "/clients");
  EXPECT_NE(keys.status().message().find("carol.pub: line 1"), std::string::npos) << keys.status().ToString();
  fs::create_directories(dir_ + "/empty");
  keys = LoadCurvePublicKeys(dir_ + "/empty");
  ASSERT_TRUE(keys.ok());
  EXPECT_TRUE(keys->empty());
  EXPECT_EQ(LoadCurvePublicKeys(dir_ + "/nowhere").status().code(), StatusCode::kNotFound);
}

TEST(CurveKeyTest, Z85RoundTripAndRejects) {
  const CurveKeyPair pair = NewPair();
  Result<CurvePublicKey> parsed = ParseZ85PublicKey(pair.public_key.Z85());
  ASSERT_TRUE(parsed.ok());
  EXPECT_EQ(*parsed, pair.public_key);
  EXPECT_FALSE(ParseZ85PublicKey("short").ok());
  EXPECT_FALSE(ParseZ85PublicKey(std::string(40, ' ')).ok());
  EXPECT_FALSE(ParseZ85PublicKey(std::string(40, '#')).ok()) << "a 5-character group over 2^32";
}

}  // namespace
}  // namespace flover
