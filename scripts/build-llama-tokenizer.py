#!/usr/bin/env python3
"""Rebuild the Llama-2 tokenizer (the one vicuna-7b-v1.5 and so Video-LLaVA use) as a
`tokenizers` tokenizer.json, without hub access.

Source of truth: the npm package `llama-tokenizer-js` (1.2.2), whose `llama-tokenizer.js` embeds
the 32,000-token vocabulary (`llama_vocab_base64`: tokens joined by "\\n", base64) and the 61,249
BPE merges (`llama_merges_binary`: pairs of little-endian uint16 vocab ids, base64, in priority
order). Its `data-conversion.py` documents that encoding; it was made from Llama-2's own
tokenizer.json, whose vocab ids are the line numbers.

The JSON written mirrors what transformers 5 / tokenizers 0.23 write for `LlamaTokenizer`
(BPE with byte_fallback and fuse_unk, no normalizer, Metaspace pre-tokenizer with
prepend_scheme "first" and split false, Replace/ByteFallback/Fuse/Strip decoder, a
TemplateProcessing post-processor that prepends `<s>`), plus Video-LLaVA's three extra
special tokens `<image>`=32000, `<video>`=32001, `<pad>`=32002.

Usage (plain python3, stdlib only):
    python3 scripts/build-llama-tokenizer.py OUT_DIR [--tgz llama-tokenizer-js-1.2.2.tgz]
Without --tgz it runs `npm pack llama-tokenizer-js@1.2.2` in a temporary directory.
Writes OUT_DIR/tokenizer.json, tokenizer_config.json and special_tokens_map.json.
"""

import argparse
import base64
import json
import os
import re
import struct
import subprocess
import sys
import tarfile
import tempfile

NPM_SPEC = "llama-tokenizer-js@1.2.2"
VOCAB_SIZE = 32000
MERGE_COUNT = 61249
# Video-LLaVA's additions, in id order after the base vocab.
EXTRA_SPECIAL = ["<image>", "<video>", "<pad>"]


def fetch_tgz(workdir):
    """`npm pack` the package into workdir and return the tarball's path."""
    out = subprocess.run(
        ["npm", "pack", NPM_SPEC, "--silent"],
        cwd=workdir,
        check=True,
        capture_output=True,
        text=True,
    ).stdout.strip().splitlines()[-1]
    return os.path.join(workdir, out)


def read_js(tgz_path):
    with tarfile.open(tgz_path, "r:gz") as tar:
        member = tar.getmember("package/llama-tokenizer.js")
        return tar.extractfile(member).read().decode("utf-8")


def js_string_constant(src, name):
    m = re.search(r'const %s = "([^"]*)"' % re.escape(name), src)
    if m is None:
        sys.exit("llama-tokenizer.js has no constant %s" % name)
    return m.group(1)


def decode_vocab_and_merges(src):
    vocab = base64.b64decode(js_string_constant(src, "llama_vocab_base64")).decode("utf-8").split("\n")
    raw = base64.b64decode(js_string_constant(src, "llama_merges_binary"))
    ids = struct.unpack("<%dH" % (len(raw) // 2), raw)
    merges = [[vocab[ids[i]], vocab[ids[i + 1]]] for i in range(0, len(ids), 2)]
    if len(vocab) != VOCAB_SIZE or len(set(vocab)) != VOCAB_SIZE:
        sys.exit("expected %d distinct tokens, got %d" % (VOCAB_SIZE, len(vocab)))
    if len(merges) != MERGE_COUNT:
        sys.exit("expected %d merges, got %d" % (MERGE_COUNT, len(merges)))
    if vocab[:3] != ["<unk>", "<s>", "</s>"] or vocab[15043] != "\u2581Hello":
        sys.exit("vocabulary is not Llama-2's (ids 0..2 or 15043 differ)")
    return vocab, merges


def added_token(idx, content):
    return {
        "id": idx,
        "content": content,
        "single_word": False,
        "lstrip": False,
        "rstrip": False,
        "normalized": False,
        "special": True,
    }


def tokenizer_json(vocab, merges):
    specials = [(0, "<unk>"), (1, "<s>"), (2, "</s>")]
    specials += [(VOCAB_SIZE + i, tok) for i, tok in enumerate(EXTRA_SPECIAL)]
    return {
        "version": "1.0",
        "truncation": None,
        "padding": None,
        "added_tokens": [added_token(i, t) for i, t in specials],
        "normalizer": None,
        "pre_tokenizer": {
            "type": "Metaspace",
            "replacement": "\u2581",
            "prepend_scheme": "first",
            "split": False,
        },
        "post_processor": {
            "type": "TemplateProcessing",
            "single": [
                {"SpecialToken": {"id": "<s>", "type_id": 0}},
                {"Sequence": {"id": "A", "type_id": 0}},
            ],
            "pair": [
                {"SpecialToken": {"id": "<s>", "type_id": 0}},
                {"Sequence": {"id": "A", "type_id": 0}},
                {"SpecialToken": {"id": "<s>", "type_id": 1}},
                {"Sequence": {"id": "B", "type_id": 1}},
            ],
            "special_tokens": {"<s>": {"id": "<s>", "ids": [1], "tokens": ["<s>"]}},
        },
        "decoder": {
            "type": "Sequence",
            "decoders": [
                {"type": "Replace", "pattern": {"String": "\u2581"}, "content": " "},
                {"type": "ByteFallback"},
                {"type": "Fuse"},
                {"type": "Strip", "content": " ", "start": 1, "stop": 0},
            ],
        },
        "model": {
            "type": "BPE",
            "dropout": None,
            "unk_token": "<unk>",
            "continuing_subword_prefix": None,
            "end_of_word_suffix": None,
            "fuse_unk": True,
            "byte_fallback": True,
            "ignore_merges": False,
            "vocab": {tok: i for i, tok in enumerate(vocab)},
            "merges": merges,
        },
    }


def tokenizer_config():
    specials = [(0, "<unk>"), (1, "<s>"), (2, "</s>")]
    specials += [(VOCAB_SIZE + i, tok) for i, tok in enumerate(EXTRA_SPECIAL)]
    decoder = {}
    for idx, tok in specials:
        entry = added_token(idx, tok)
        del entry["id"]
        decoder[str(idx)] = entry
    return {
        "add_bos_token": True,
        "add_eos_token": False,
        "add_prefix_space": None,
        "added_tokens_decoder": decoder,
        "backend": "tokenizers",
        "bos_token": "<s>",
        "clean_up_tokenization_spaces": False,
        "eos_token": "</s>",
        "extra_special_tokens": {"image_token": "<image>", "video_token": "<video>"},
        "legacy": False,
        "model_max_length": 4096,
        "pad_token": "<pad>",
        "padding_side": "left",
        "tokenizer_class": "LlamaTokenizer",
        "unk_token": "<unk>",
        "use_default_system_prompt": False,
    }


def special_tokens_map():
    def tok(content):
        return {"content": content, "lstrip": False, "normalized": False, "rstrip": False, "single_word": False}

    return {
        "bos_token": tok("<s>"),
        "eos_token": tok("</s>"),
        "pad_token": tok("<pad>"),
        "unk_token": tok("<unk>"),
    }


def write_tokenizer_json(path, obj):
    """Like the indented JSON tokenizers writes, but one vocab entry / merge per line: the same
    document at less than half the size (it is committed several times as a test fixture)."""
    model = obj["model"]
    vocab, merges = model["vocab"], model["merges"]
    model["vocab"], model["merges"] = "@@VOCAB@@", "@@MERGES@@"
    text = json.dumps(obj, ensure_ascii=False, indent=2)
    model["vocab"], model["merges"] = vocab, merges
    pad = " " * 6
    vocab_text = "{\n%s\n    }" % ",\n".join(
        "%s%s: %d" % (pad, json.dumps(tok, ensure_ascii=False), idx) for tok, idx in vocab.items()
    )
    merges_text = "[\n%s\n    ]" % ",\n".join(pad + json.dumps(m, ensure_ascii=False) for m in merges)
    text = text.replace('"@@VOCAB@@"', vocab_text, 1).replace('"@@MERGES@@"', merges_text, 1)
    with open(path, "w", encoding="utf-8", newline="\n") as f:
        f.write(text + "\n")


def write_json(path, obj):
    with open(path, "w", encoding="utf-8", newline="\n") as f:
        json.dump(obj, f, ensure_ascii=False, indent=2)
        f.write("\n")


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("out_dir")
    ap.add_argument("--tgz", help="an already downloaded llama-tokenizer-js tarball")
    args = ap.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        tgz = args.tgz or fetch_tgz(tmp)
        vocab, merges = decode_vocab_and_merges(read_js(tgz))

    os.makedirs(args.out_dir, exist_ok=True)
    tok = tokenizer_json(vocab, merges)
    write_tokenizer_json(os.path.join(args.out_dir, "tokenizer.json"), tok)
    with open(os.path.join(args.out_dir, "tokenizer.json"), encoding="utf-8") as f:
        if json.load(f) != tok:
            sys.exit("tokenizer.json did not read back as written")
    write_json(os.path.join(args.out_dir, "tokenizer_config.json"), tokenizer_config())
    write_json(os.path.join(args.out_dir, "special_tokens_map.json"), special_tokens_map())
    print("wrote %s (%d tokens + %d added, %d merges)" % (args.out_dir, len(vocab), len(EXTRA_SPECIAL), len(merges)))


if __name__ == "__main__":
    main()
