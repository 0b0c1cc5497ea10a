"""Train the bundled offline Korean BPE tokenizer (platform/multi_task_kobart/assets/tokenizer/).

The result mirrors KoBART's tokenizer.json (BPE with ``<unk>``, NFKC normaliser, Metaspace
``▁`` pre-tokenizer and decoder, no post-processor, specials ``<s> </s> <usr> <pad> <sys> <unk>
<mask>`` at ids 0-6) so every code path written for KoBART runs unchanged on it. Two choices
differ, both so that text outside the small training corpus still round-trips exactly:

* the initial alphabet holds the 2,350 Hangul syllables of KS X 1001 (the everyday set) plus
  printable ASCII, even where the corpus never uses them;
* 256 byte tokens ``<0x00>``..``<0xFF>`` (ids 7-262) with ``byte_fallback``: any other
  character (rare syllables such as 똠, Hanja, emoji) is spelled as its UTF-8 bytes instead of
  becoming ``<unk>``.

Training text is the bundled corpus's *train* split only (inputs, targets and QA answers), so
held-out rows never shape the merges. The ``tokenizers`` BPE trainer is deterministic for a fixed
input order, and the corpus is deterministic for a seed, so reruns reproduce the asset byte for byte.

Usage: python scripts/train_tokenizer.py [--vocab-size 6000] [--seed 0] [--out-dir DIR]
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, trainers

from multi_task_kobart.data.corpus import generate_corpus
from multi_task_kobart.tokenizer import BUNDLED_TOKENIZER_DIR, KOBART_SPECIAL_IDS

SPECIAL_TOKENS = list(KOBART_SPECIAL_IDS)  # dict order is id order: <s>, </s>, ..., <mask>
BYTE_TOKENS = [f"<0x{value:02X}>" for value in range(256)]
DEFAULT_VOCAB_SIZE = 6000
MODEL_MAX_LENGTH = 1024  # KoBART: 1026 learned positions, 2 of them reserved by BART's offset
_EXTRA_PUNCTUATION = list("·…‘’“”《》〈〉「」『』→~%")


def ks_x_1001_hangul() -> list[str]:
    """The 2,350 precomposed syllables of KS X 1001: exactly those EUC-KR encodes in 2 bytes.

    (Python's EUC-KR codec spells the other 8,822 syllables as 8-byte jamo sequences.)
    """
    return [chr(cp) for cp in range(0xAC00, 0xD7A4) if len(chr(cp).encode("euc-kr")) == 2]


def initial_alphabet() -> list[str]:
    """Characters that get a token even when the corpus never shows them."""
    ascii_printable = [chr(cp) for cp in range(0x21, 0x7F)]
    return ascii_printable + _EXTRA_PUNCTUATION + ks_x_1001_hangul()


def training_texts(seed: int) -> list[str]:
    """Inputs, targets and QA answers of the corpus's train split, in corpus order."""
    texts: list[str] = []
    for row in generate_corpus(seed)["train"]:
        texts.extend([row["input"], row["target"], *row.get("answers", [])])
    return texts


def _pipeline(tokenizer: Tokenizer) -> Tokenizer:
    """KoBART's text pipeline: NFKC, then split on spaces that become ``▁``; no post-processor."""
    metaspace = {"replacement": "▁", "prepend_scheme": "always", "split": True}
    tokenizer.normalizer = normalizers.NFKC()
    tokenizer.pre_tokenizer = pre_tokenizers.Metaspace(**metaspace)
    # ByteFallback first turns runs of <0xNN> tokens back into characters; Metaspace then
    # restores spaces and drops the one it prepended.
    tokenizer.decoder = decoders.Sequence([decoders.ByteFallback(), decoders.Metaspace(**metaspace)])
    return tokenizer


def train_bpe(texts: list[str], vocab_size: int) -> Tokenizer:
    """Plain BPE training; the byte tokens are added afterwards (see :func:`with_byte_fallback`)."""
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size - len(BYTE_TOKENS), min_frequency=2, special_tokens=SPECIAL_TOKENS,
        initial_alphabet=initial_alphabet(), show_progress=False,
    )
    tokenizer = _pipeline(Tokenizer(models.BPE(unk_token="<unk>")))
    tokenizer.train_from_iterator(texts, trainer=trainer)
    return tokenizer


def with_byte_fallback(trained: Tokenizer) -> Tokenizer:
    """Rebuild the model with ids: specials 0-6, byte tokens 7-262, then the trained tokens.

    The byte tokens go into the BPE vocabulary rather than the added tokens: added tokens are
    "special" and ``skip_special_tokens=True`` would silently drop the bytes when decoding.
    """
    state = json.loads(trained.to_str())
    trained_vocab: dict[str, int] = state["model"]["vocab"]
    ordered = sorted(trained_vocab, key=trained_vocab.__getitem__)
    n_special = len(SPECIAL_TOKENS)
    if ordered[:n_special] != SPECIAL_TOKENS:
        raise RuntimeError(f"Trainer put specials at unexpected ids: {ordered[:n_special]}.")
    learned = [token for token in ordered[n_special:] if token not in BYTE_TOKENS]
    tokens = SPECIAL_TOKENS + BYTE_TOKENS + learned
    # tokenizers >= 0.20 stores merges as pairs; older files use "a b" strings.
    merges = [tuple(pair) if isinstance(pair, list) else tuple(pair.split(" "))
              for pair in state["model"]["merges"]]
    model = models.BPE(vocab={token: index for index, token in enumerate(tokens)}, merges=merges,
                       unk_token="<unk>", byte_fallback=True)
    tokenizer = _pipeline(Tokenizer(model))
    tokenizer.add_special_tokens(SPECIAL_TOKENS)
    return tokenizer


def check_tokenizer(tokenizer: Tokenizer, texts: list[str]) -> dict[str, float]:
    """Specials at KoBART's ids, no ``<unk>``, and exact round trips; returns summary numbers."""
    for token, expected in KOBART_SPECIAL_IDS.items():
        if tokenizer.token_to_id(token) != expected:
            raise RuntimeError(f"{token!r} has id {tokenizer.token_to_id(token)}, expected {expected}.")
    encodings = tokenizer.encode_batch(texts, add_special_tokens=False)
    unk = KOBART_SPECIAL_IDS["<unk>"]
    for text, encoding in zip(texts, encodings):
        if unk in encoding.ids or tokenizer.decode(encoding.ids, skip_special_tokens=False) != text:
            raise RuntimeError(f"Round trip failed for {text!r}: {encoding.tokens}.")
    n_tokens = sum(len(encoding.ids) for encoding in encodings)
    return {"texts": len(texts), "mean_tokens": n_tokens / max(len(texts), 1)}


def write_assets(tokenizer: Tokenizer, out_dir: Path) -> list[Path]:
    """tokenizer.json plus the tokenizer_config.json that ``from_pretrained(dir)`` reads."""
    out_dir.mkdir(parents=True, exist_ok=True)
    tokenizer_path = out_dir / "tokenizer.json"
    tokenizer.save(str(tokenizer_path), pretty=False)
    config = {
        "tokenizer_class": "PreTrainedTokenizerFast", "bos_token": "<s>", "eos_token": "</s>",
        "unk_token": "<unk>", "pad_token": "<pad>", "mask_token": "<mask>",
        "model_max_length": MODEL_MAX_LENGTH, "clean_up_tokenization_spaces": False,
    }
    config_path = out_dir / "tokenizer_config.json"
    config_path.write_text(json.dumps(config, ensure_ascii=False, indent=2) + "\n", encoding="utf-8")
    return [tokenizer_path, config_path]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--vocab-size", type=int, default=DEFAULT_VOCAB_SIZE,
                        help="target size including specials and the 256 byte tokens")
    parser.add_argument("--seed", type=int, default=0, help="corpus seed")
    parser.add_argument("--out-dir", type=Path, default=BUNDLED_TOKENIZER_DIR)
    args = parser.parse_args(argv)
    minimum = len(SPECIAL_TOKENS) + len(BYTE_TOKENS) + len(initial_alphabet())
    if args.vocab_size <= minimum:
        parser.error(f"--vocab-size must exceed {minimum} (specials + bytes + alphabet), "
                     f"got {args.vocab_size}")
    texts = training_texts(args.seed)
    tokenizer = with_byte_fallback(train_bpe(texts, args.vocab_size))
    stats = check_tokenizer(tokenizer, texts)
    paths = write_assets(tokenizer, args.out_dir)
    print(f"vocab {tokenizer.get_vocab_size()}; {stats['texts']} training texts, "
          f"{stats['mean_tokens']:.1f} tokens each on average; round trips exact")
    for path in paths:
        print(f"wrote {path} ({path.stat().st_size:,} bytes)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
