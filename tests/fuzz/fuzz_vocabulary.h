// The vocabulary of the fuzz harnesses: a small llama2.c tokenizer file built in code,
// so that every harness and every crash reproduces without model files. Like tok512.bin
// it has unk, BOS, EOS, the 256 byte pieces <0x00>..<0xFF> (ids 3..258, so every byte
// string encodes), the space, printable ASCII, a few multi-byte UTF-8 characters and
// merges of common English pieces with descending scores.
#pragma once

#include <string>

namespace flover::fuzzing {

// The tokenizer file's bytes (Tokenizer::ParseLlama2c reads them).
const std::string& FuzzVocabularyFile();

// A path that names FuzzVocabularyFile() for the life of the process (a memfd under
// /proc/self/fd), for configs that name a tokenizer file.
const std::string& FuzzVocabularyPath();

}  // namespace flover::fuzzing
