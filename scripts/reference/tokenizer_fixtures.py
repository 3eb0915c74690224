#!/usr/bin/env python3
"""Reference fixtures for Flover's tokenizers (tests/fixtures/tokenizers/).

Builds small tokenizers of the kinds Flover reads and records what Hugging Face
`tokenizers` gives for them, so that the C++ tests (tests/common/tokenizer_fixture_test.cc)
check encode and decode against the reference without Python at test time:

  llama3            byte-level BPE, Llama 3's pre-tokenizer regex, ignore_merges, special
                    tokens after the model vocabulary, a BOS template
  qwen2             byte-level BPE, NFC normalizer, Qwen2's regex, ChatML special tokens
  gpt2              byte-level BPE, the ByteLevel pre-tokenizer with GPT-2's regex, the
                    special token inside the model vocabulary, added tokens with
                    lstrip / rstrip / normalized flags
  llama2            stories260K's tok512.model converted by transformers
                    (LlamaTokenizerFast, legacy): Prepend + Replace normalizer, BPE with
                    byte fallback, Replace / ByteFallback / Fuse / Strip decoder
  llama2-metaspace  the same model converted with legacy=False: the Metaspace
                    pre-tokenizer (prepend_scheme "first")
  features          the less common parts: NFKC and regex Replace normalizers, Split
                    behaviours (merged with previous / next, removed, inverted), Digits,
                    a continuing-subword prefix, single_word / rstrip / normalized added
                    tokens, Replace and Strip decoders

Each folder gets tokenizer.json, tokenizer_config.json and cases.json:
  {"tokenizers_version", "add_bos", "bos_id", "eos_id",
   "encode": [[text, ids] or [text, ids, decoded]],  decoded only where it differs from text
   "decode": [[ids, text]]}                            random ids, incl. specials and bytes
where ids = encode(text, add_special_tokens=False), decoded = decode(ids,
skip_special_tokens=False), and add_bos says that encode(text, add_special_tokens=True)
is [bos_id] + ids for every text (checked here).

Run scripts/reference/tokenizer_fixtures.sh (a pinned venv), or directly with
tokenizers, transformers, sentencepiece and protobuf installed:
  tokenizer_fixtures.py --models-dir DIR [--out tests/fixtures/tokenizers]
DIR (default: $FLOVER_MODELS_DIR) holds stories260K/tok512.model.
"""
import argparse
import json
import os
import random
import sys

import tokenizers
from tokenizers import AddedToken, Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers, processors, trainers

LLAMA3_PATTERN = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*"
                  r"|\s*[\r\n]+|\s+(?!\S)|\s+")
QWEN2_PATTERN = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*"
                 r"|\s*[\r\n]+|\s+(?!\S)|\s+")

CORPUS = """\
Once upon a time, there was a little girl named Lily. She loved to play outside in the sunshine.
One day, she saw a big, red ball in the park. "Can I play with it?" she asked her mom. They're
happy; we'll see. I'm sure you've heard it: don't stop, it's fine, she'd say. THE END. The end!
def encode(self, text: str) -> list[int]:
    return [self.vocab[t] for t in text.split()]  # 42 tokens, 3.14159, 0x1F, 1_000_000
for (int i = 0; i < n; ++i) { sum += a[i] * b[i]; }  // C++20 std::vector<float>
{"model": {"type": "BPE", "vocab": {"a": 0}, "merges": ["a b"]}, "version": "1.0"}
Le café est très bon, n'est-ce pas ? Ça coûte 3,50 €. L'été à Paris, où il fait beau.
Die Straße ist schön; Grüße aus München. Über 100 Bäume wachsen hier.
Москва — столица России. Привет, как дела? Это очень хорошо.
Το γρήγορο καφέ αλεπού. Καλημέρα κόσμε!
東京は日本の首都です。今日はいい天気ですね。我爱北京天安门。你好，世界！
안녕하세요 세계. 한국어 문장입니다.
مرحبا بالعالم. هذه جملة عربية. שלום עולם.
नमस्ते दुनिया। यह हिंदी है। สวัสดีชาวโลก
Emoji: 😀 😃 👍🏽 👨‍👩‍👧‍👦 🇫🇷 🇯🇵 ❤️ ✨ 🎉 1️⃣
Numbers 12345 6789 2024-01-15 12:30:45 +1 (555) 010-9999 3.0e-8 -17 1,234,567.89
Tabs\tand\tnewlines\n\nand   multiple   spaces    here.\r\nWindows line.
    indented code
        more indented
""" * 3


def strings(rng, specials):
    """The texts: hand-picked tricky ones, then random mixes of fragments."""
    fixed = [
        "", " ", "  ", "   ", "\t", "\n", "\r\n", "\n\n\n", " \n ", "\t \t", "a", "A", "Hello", " Hello",
        "Hello world", "Hello  world", "Hello world ", "hello\tworld\n", "  leading", "trailing  ",
        "don't", "DON'T", "I'm", "you're", "we'LL", "she'd", "it's", "'s", "'", "''", "'re'", "ſ's", "I'S",
        "1", "12", "123", "1234", "12345678901234567890", "3.14159", "1,000,000", "-42", "0x1F", "1e-10",
        "2024-01-15T12:30:45Z", "v1.2.3", "#1", "100%", "$9.99", "₹500", "٣٤٥", "１２３", "Ⅻ", "½",
        "café", "cafe\u0301", "e\u0301\u0301", "\u0301", "a\u0308\u0304", "Å", "A\u030a", "\u212b", "ﬁ",
        "naïve résumé", "Ångström", "Straße", "İstanbul", "ǅ", "ΣΑΣ", "ς", "ǈ",
        "日本語", "東京は日本の首都です。", "你好，世界！", "中文 English 混合", "カタカナ", "ｶﾀｶﾅ",
        "한국어", "\u1112\u1161\u11ab", "안녕", "ㄱㄴㄷ",
        "مرحبا", "שלום", "नमस्ते", "สวัสดี", "ሰላም", "ᚠᛇᚻ", "𝐀𝐁𝐂", "𝔘𝔫𝔦𝔠𝔬𝔡𝔢", "🀄", "𓀀",
        "😀", "😀😀", "👍🏽", "👨‍👩‍👧‍👦", "👩‍💻", "🏳️‍🌈", "🇫🇷🇯🇵", "1️⃣", "❤️", "✨🎉", "🤖 robot", "emoji😀inside",
        "\u200b", "a\u200bb", "\u200d", "\ufeffBOM", "\u00a0", "a\u00a0b", "\u3000", "\u2028", "\u2029", "\u0085",
        "\u000b\u000c", "\u0000", "a\u0000b", "\u0001\u0002", "\u007f", "\ufffd", "\ue000", "\U0010fffd", "\uffff",
        "<0x41>", "<0x0A>", "<0xZZ>", "<0x>", "<unk>", "▁", "▁▁", "▁Hello", "Ġ", "Ċ", "Ġthe", "\\x00", "\\u0041",
        "def f(x):\n    return x**2\n", "int main() { return 0; }", "if (a && b || !c) {}", "x => x + 1",
        "<html><body>Hi</body></html>", '{"a": [1, 2, {"b": null}]}', "SELECT * FROM t WHERE id = 1;",
        "https://example.com/path?q=1&r=2#frag", "user@example.com", "C:\\Users\\name", "~/.bashrc",
        "    ", "\t\t", "a    b", "a\t\tb", "a \n b", "a\n\n\nb", "a \r\n b", "end.  ", "end.\n", "!!!", "???",
        "...", "—", "–", "«»", "“quoted”", "‘single’", "(", ")", "[[]]", "@#$%^&*", "a.b.c", "a,b,c", "__init__",
        " ".join(["word"] * 20), "x" * 100, "ab" * 40, " " * 40, "\n" * 10, "9" * 50, "😀" * 10, "の" * 20,
    ]
    for s in specials:
        fixed += [s, s + s, "a" + s + "b", " " + s + " ", "text " + s + "\nmore", s[:-1], s[1:], s[:3] + " " + s[3:],
                  s + "Hello", "Hello" + s, "  " + s + "  x"]
    fragments = [f for f in fixed if f] + [
        "the", " the", "The", "once", " upon", " a", " time", "little", " girl", "Lily", "play", "ball", "park",
        " ", "  ", "\t", "\n", "\r\n", ",", ".", "!", "?", ":", ";", "-", "'", '"', "/", "\\", "'s", "'ll", "'VE",
        "0", "7", "42", "2024", "3.5", "0.001", "é", "ü", "ß", "ñ", "ø", "ç", "Ж", "ж", "λ", "中", "日", "本", "語",
        "ア", "ー", "가", "ا", "ل", "ש", "क", "्", "ิ", "\u0301", "\u0308", "😀", "🏽", "\u200d", "👩", "🇫", "🇷",
        "\ufe0f", "⃣", "€", "£", "¥", "°", "±", "×", "÷", "→", "∑", "∞", "≠", "≤", "√", "🙂", "🔥", "💯",
    ]
    out = list(dict.fromkeys(fixed))
    seen = set(out)
    while len(out) < 1000:
        n = rng.randint(1, 6)
        s = "".join(rng.choice(fragments) for _ in range(n))
        if len(s) > 40 or s in seen:
            continue
        seen.add(s)
        out.append(s)
    return out


def train_byte_level(pre_tokenizer, normalizer, vocab_size, trainer_specials):
    tok = Tokenizer(models.BPE())
    tok.normalizer = normalizer
    tok.pre_tokenizer = pre_tokenizer
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=trainer_specials, show_progress=False,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tok.train_from_iterator(CORPUS.splitlines(keepends=True), trainer=trainer)
    return tok


def with_model_option(tok, **options):
    """`tok` with options of its model section changed (e.g. ignore_merges)."""
    j = json.loads(tok.to_str())
    j["model"].update(options)
    return Tokenizer.from_str(json.dumps(j))


def build_llama3():
    split = pre_tokenizers.Split(Regex(LLAMA3_PATTERN), behavior="isolated", invert=False)
    tok = train_byte_level(pre_tokenizers.Sequence([split, pre_tokenizers.ByteLevel(add_prefix_space=False,
                                                                                    use_regex=False)]),
                           None, 900, [])
    tok = with_model_option(tok, ignore_merges=True)
    specials = ["<|begin_of_text|>", "<|end_of_text|>", "<|start_header_id|>", "<|end_header_id|>", "<|eot_id|>"]
    tok.add_special_tokens([AddedToken(s, special=True, normalized=False) for s in specials])
    bos = tok.token_to_id("<|begin_of_text|>")
    tok.post_processor = processors.Sequence([
        processors.ByteLevel(trim_offsets=False),
        processors.TemplateProcessing(single="<|begin_of_text|> $A", pair="<|begin_of_text|> $A <|begin_of_text|> $B",
                                      special_tokens=[("<|begin_of_text|>", bos)]),
    ])
    config = {"bos_token": "<|begin_of_text|>", "eos_token": "<|eot_id|>", "tokenizer_class": "PreTrainedTokenizerFast"}
    return tok, config, specials


def build_qwen2():
    split = pre_tokenizers.Split(Regex(QWEN2_PATTERN), behavior="isolated", invert=False)
    tok = train_byte_level(pre_tokenizers.Sequence([split, pre_tokenizers.ByteLevel(add_prefix_space=False,
                                                                                    use_regex=False)]),
                           normalizers.NFC(), 900, [])
    tok.post_processor = processors.ByteLevel(trim_offsets=False)
    specials = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
    tok.add_special_tokens([AddedToken(s, special=True, normalized=False) for s in specials])
    config = {"bos_token": None, "eos_token": "<|im_end|>", "pad_token": "<|endoftext|>", "add_prefix_space": False,
              "tokenizer_class": "Qwen2Tokenizer"}
    return tok, config, specials


def build_gpt2():
    tok = train_byte_level(pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True), None, 800,
                           ["<|endoftext|>"])
    tok.post_processor = processors.ByteLevel(trim_offsets=True)
    # RoBERTa's mask (lstrip), a user token that eats following spaces (rstrip), and one
    # matched after normalization (normalized=True, not special).
    tok.add_special_tokens([AddedToken("<mask>", lstrip=True, special=True, normalized=False)])
    tok.add_tokens([AddedToken("<tool>", rstrip=True, normalized=False), AddedToken("hello world", normalized=True)])
    config = {"bos_token": "<|endoftext|>", "eos_token": "<|endoftext|>", "add_bos_token": False,
              "tokenizer_class": "GPT2Tokenizer"}
    return tok, config, ["<|endoftext|>", "<mask>", "<tool>", "hello world"]


def build_features():
    tok = Tokenizer(models.BPE(continuing_subword_prefix="##"))
    tok.normalizer = normalizers.Sequence([normalizers.NFKC(), normalizers.Replace(Regex(r"\s+"), " "),
                                           normalizers.Strip(left=False, right=True)])
    tok.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Split(Regex(r"\p{P}"), behavior="merged_with_previous"),
        pre_tokenizers.Split(Regex(r"[<>]"), behavior="removed"),
        pre_tokenizers.Split(Regex(r"\p{L}+"), behavior="contiguous", invert=True),
        pre_tokenizers.Digits(individual_digits=True),
        pre_tokenizers.Split(" ", behavior="merged_with_next"),
        pre_tokenizers.ByteLevel(add_prefix_space=True, use_regex=False),
    ])
    tok.decoder = decoders.Sequence([decoders.Replace("##", ""), decoders.ByteLevel(), decoders.Strip(" ", 2, 0)])
    trainer = trainers.BpeTrainer(vocab_size=700, special_tokens=["<|sep|>"], show_progress=False,
                                  continuing_subword_prefix="##", initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tok.train_from_iterator(CORPUS.splitlines(keepends=True), trainer=trainer)
    tok.add_special_tokens([AddedToken("<|sep|>", rstrip=True, special=True, normalized=False)])
    tok.add_tokens([AddedToken("[NAME]", single_word=True, normalized=False), AddedToken("ﬁne", normalized=True)])
    sep = tok.token_to_id("<|sep|>")
    tok.post_processor = processors.TemplateProcessing(single="<|sep|> $A <|sep|>", pair="<|sep|> $A <|sep|> $B",
                                                       special_tokens=[("<|sep|>", sep)])
    config = {"bos_token": "<|sep|>", "eos_token": "<|sep|>"}
    return tok, config, ["<|sep|>", "[NAME]", "fine", "ﬁne"]


def build_llama2(models_dir, legacy):
    from transformers import LlamaTokenizerFast
    path = os.path.join(models_dir, "stories260K", "tok512.model")
    if not os.path.isfile(path):
        sys.exit(f"tokenizer_fixtures: {path} does not exist (pass --models-dir or set FLOVER_MODELS_DIR)")
    fast = LlamaTokenizerFast(vocab_file=path, from_slow=True, legacy=legacy, add_prefix_space=True)
    tok = Tokenizer.from_str(fast.backend_tokenizer.to_str())
    config = {"bos_token": "<s>", "eos_token": "</s>", "unk_token": "<unk>", "add_bos_token": True,
              "add_eos_token": False, "legacy": legacy, "tokenizer_class": "LlamaTokenizer"}
    return tok, config, ["<s>", "</s>", "<unk>"]


def cases(tok, texts, rng, bos_id, add_bos):
    encode = []
    for text in texts:
        ids = tok.encode(text, add_special_tokens=False).ids
        with_specials = tok.encode(text, add_special_tokens=True).ids
        expected = ([bos_id] if add_bos else []) + ids
        if with_specials[len(expected):] == with_specials[-1:] and with_specials[:len(expected)] == expected:
            with_specials = expected  # a template's token after the text (EOS) is not added by Flover
        if with_specials != expected:
            sys.exit(f"tokenizer_fixtures: encode({text!r}, add_special_tokens=True) = {with_specials}, "
                     f"not {expected}")
        decoded = tok.decode(ids, skip_special_tokens=False)
        encode.append([text, ids] if decoded == text else [text, ids, decoded])
    n = tok.get_vocab_size(with_added_tokens=True)
    decode = []
    for _ in range(150):
        ids = [rng.randrange(n) for _ in range(rng.randint(1, 10))]
        decode.append([ids, tok.decode(ids, skip_special_tokens=False)])
    return encode, decode


def write(out_dir, name, tok, config, specials, rng, merges_as_strings=False):
    folder = os.path.join(out_dir, name)
    os.makedirs(folder, exist_ok=True)
    tok_json = json.loads(tok.to_str())
    if merges_as_strings:  # the older form, "a b"
        tok_json["model"]["merges"] = [" ".join(m) for m in tok_json["model"]["merges"]]
    with open(os.path.join(folder, "tokenizer.json"), "w", encoding="utf-8") as f:
        json.dump(tok_json, f, ensure_ascii=False, separators=(",", ":"))
    tok = Tokenizer.from_file(os.path.join(folder, "tokenizer.json"))  # the cases are of the file as written
    with open(os.path.join(folder, "tokenizer_config.json"), "w", encoding="utf-8") as f:
        json.dump(config, f, ensure_ascii=False, indent=1)
    bos = config.get("bos_token")
    bos_id = tok.token_to_id(bos) if bos else None
    eos_id = tok.token_to_id(config["eos_token"])
    # Whether the post-processor adds BOS (then checked for every text).
    add_bos = bos_id is not None and tok.encode("Hello").ids[:1] == [bos_id]
    encode, decode = cases(tok, strings(rng, specials), rng, bos_id, add_bos)
    doc = {"tokenizers_version": tokenizers.__version__, "add_bos": add_bos, "bos_id": bos_id, "eos_id": eos_id,
           "encode": encode, "decode": decode}
    with open(os.path.join(folder, "cases.json"), "w", encoding="utf-8") as f:
        json.dump(doc, f, ensure_ascii=False, separators=(",", ":"))
        f.write("\n")
    sizes = [os.path.getsize(os.path.join(folder, x)) for x in ("tokenizer.json", "cases.json")]
    print(f"{folder}: tokenizer.json {sizes[0]} bytes, cases.json {sizes[1]} bytes, {len(encode)} texts")


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--models-dir", default=os.environ.get("FLOVER_MODELS_DIR"))
    ap.add_argument("--out", default=os.path.join(os.path.dirname(__file__), "..", "..", "tests", "fixtures",
                                                  "tokenizers"))
    args = ap.parse_args()
    if not args.models_dir:
        sys.exit("tokenizer_fixtures: pass --models-dir DIR or set FLOVER_MODELS_DIR (the folder of stories260K/)")
    rng = random.Random(20240601)
    write(args.out, "llama3", *build_llama3(), rng)
    write(args.out, "qwen2", *build_qwen2(), rng)
    write(args.out, "gpt2", *build_gpt2(), rng, merges_as_strings=True)
    write(args.out, "llama2", *build_llama2(args.models_dir, legacy=True), rng, merges_as_strings=True)
    write(args.out, "llama2-metaspace", *build_llama2(args.models_dir, legacy=False), rng)
    write(args.out, "features", *build_features(), rng)


if __name__ == "__main__":
    main()
