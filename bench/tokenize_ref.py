#!/usr/bin/env python3
"""Reference GPT-2 encoder for bench/tokenize.sh and tests/cli_tokenize.sh: the algorithm of OpenAI's
encoder.py (github.com/openai/gpt-2, src/encoder.py: bytes_to_unicode, get_pairs, bpe with its dict
cache, the pre-tokenisation pattern compiled by the `regex` module) written out again, with the same
command-line contract as `dpformer tokenize` so that the outputs can be compared byte for byte:

    tokenize_ref.py --tokenizer DIR [--decode] [--json] [--stats] < input > output

Input lines are bytes; they are decoded as UTF-8 with Python's surrogateescape handler, so a byte
that is not UTF-8 becomes a lone surrogate (a character that is neither a letter, a number nor white
space) and is encoded back to that byte afterwards: the rule dpformer documents for invalid UTF-8
(docs/tokenizer.md). Special tokens are ordinary text, as in dpformer's default.

Needs the `regex` module (pip install regex; Debian: python3-regex). Python's own `re` has no \\p{L}
or \\p{N}, so it is not a substitute: the script exits with status 3 without it.
"""
import argparse
import json
import os
import sys
import time

try:
    import regex
except ImportError:  # pragma: no cover - depends on the machine
    sys.stderr.write("tokenize_ref.py: the Python module `regex` is not installed (pip install regex)\n")
    sys.exit(3)

PATTERN = r"""'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+"""


def bytes_to_unicode():
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return dict(zip(bs, [chr(c) for c in cs]))


def get_pairs(word):
    return set(zip(word, word[1:]))


class Encoder:
    def __init__(self, encoder, bpe_merges):
        self.encoder = encoder
        self.decoder = {v: k for k, v in encoder.items()}
        self.byte_encoder = bytes_to_unicode()
        self.byte_decoder = {v: k for k, v in self.byte_encoder.items()}
        self.bpe_ranks = dict(zip(bpe_merges, range(len(bpe_merges))))
        self.cache = {}
        self.pat = regex.compile(PATTERN)

    def bpe(self, token):
        if token in self.cache:
            return self.cache[token]
        word = tuple(token)
        pairs = get_pairs(word)
        if not pairs:
            return token
        while True:
            bigram = min(pairs, key=lambda pair: self.bpe_ranks.get(pair, float("inf")))
            if bigram not in self.bpe_ranks:
                break
            first, second = bigram
            new_word = []
            i = 0
            while i < len(word):
                try:
                    j = word.index(first, i)
                except ValueError:
                    new_word.extend(word[i:])
                    break
                new_word.extend(word[i:j])
                i = j
                if word[i] == first and i < len(word) - 1 and word[i + 1] == second:
                    new_word.append(first + second)
                    i += 2
                else:
                    new_word.append(word[i])
                    i += 1
            word = tuple(new_word)
            if len(word) == 1:
                break
            pairs = get_pairs(word)
        word = " ".join(word)
        self.cache[token] = word
        return word

    def encode(self, text):
        ids = []
        for token in regex.findall(self.pat, text):
            token = "".join(self.byte_encoder[b] for b in token.encode("utf-8", "surrogateescape"))
            ids.extend(self.encoder[t] for t in self.bpe(token).split(" "))
        return ids

    def decode(self, ids):
        return bytes(self.byte_decoder[c] for c in "".join(self.decoder[i] for i in ids))


def load(folder):
    for vocab, merges in (("encoder.json", "vocab.bpe"), ("vocab.json", "merges.txt")):
        if os.path.exists(os.path.join(folder, vocab)):
            with open(os.path.join(folder, vocab), encoding="utf-8") as f:
                encoder = json.load(f)
            with open(os.path.join(folder, merges), encoding="utf-8") as f:
                lines = f.read().split("\n")
            if lines and lines[0].startswith("#version"):
                lines = lines[1:]
            return Encoder(encoder, [tuple(m.split()) for m in lines if m])
    sys.exit(f"tokenize_ref.py: {folder}: no encoder.json + vocab.bpe or vocab.json + merges.txt")


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--tokenizer", required=True)
    ap.add_argument("--decode", action="store_true")
    ap.add_argument("--json", action="store_true")
    ap.add_argument("--stats", action="store_true")
    a = ap.parse_args()
    t0 = time.perf_counter()
    enc = load(a.tokenizer)
    t_load = time.perf_counter() - t0
    out = sys.stdout.buffer
    n_lines = n_bytes = n_tokens = 0
    t_work = 0.0
    for raw in sys.stdin.buffer:
        n_lines += 1
        if raw.endswith(b"\n"):
            raw = raw[:-1]
        if not a.decode:
            text = raw.decode("utf-8", "surrogateescape")
            if a.json:
                text = json.loads(text)
            t = time.perf_counter()
            ids = enc.encode(text)
            t_work += time.perf_counter() - t
            n_bytes += len(text.encode("utf-8", "surrogateescape"))
            n_tokens += len(ids)
            line = ("[" + ",".join(map(str, ids)) + "]") if a.json else " ".join(map(str, ids))
            out.write(line.encode() + b"\n")
        else:
            ids = json.loads(raw) if a.json else [int(x) for x in raw.split()]
            t = time.perf_counter()
            data = enc.decode(ids)
            t_work += time.perf_counter() - t
            n_bytes += len(data)
            n_tokens += len(ids)
            if a.json:
                data = json.dumps(data.decode("utf-8", "replace"), ensure_ascii=False).encode()
            out.write(data + b"\n")
    out.flush()
    if a.stats:
        what = "decoding" if a.decode else "encoding"
        sys.stderr.write(
            f"tokenize_ref.py: {n_lines} lines, {n_bytes} bytes of text, {n_tokens} tokens; {what} {t_work:.3f} s = "
            f"{n_bytes / t_work / 1e6 if t_work > 0 else 0:.2f} MB/s of text on one thread; loading {t_load:.3f} s "
            f"(Python {sys.version.split()[0]}, regex {regex.__version__})\n"
        )


if __name__ == "__main__":
    main()
