"""KoBART-compatible tokenizers: the bundled offline BPE, a local path, or a hub id.

Every tokenizer this module returns has KoBART's special-token layout (``<s>``=0, ``</s>``=1,
``<usr>``=2, ``<pad>``=3, ``<sys>``=4, ``<unk>``=5, ``<mask>``=6), so a model trained with one
tokenizer never silently reads another's ids. Neither KoBART's tokenizer nor the bundled one adds
``<s>``/``</s>`` by itself; :func:`add_special_ids` is the one place that decides where they go:

* sources: ``[<s>] + tokens(input) + [</s>]``
* targets: ``tokens(target) + [</s>]``  (the decoder starts from ``</s>``, as in BART)

Both are cut to ``max_length`` with the final ``</s>`` kept, and callers learn which rows were cut.
"""

from __future__ import annotations

import hashlib
import json
from functools import lru_cache
from pathlib import Path
from typing import Literal, Sequence

from transformers import PreTrainedTokenizerFast

BOS_ID = 0
EOS_ID = 1
PAD_ID = 3
UNK_ID = 5
MASK_ID = 6
#: BART starts decoding from ``</s>``; decoder_input_ids = shift_right(labels) with this id first.
DECODER_START_ID = EOS_ID
#: Label positions with this value are ignored by the cross-entropy loss.
LABEL_PAD = -100

#: KoBART's special tokens and the ids every accepted tokenizer must give them.
KOBART_SPECIAL_IDS: dict[str, int] = {
    "<s>": 0, "</s>": 1, "<usr>": 2, "<pad>": 3, "<sys>": 4, "<unk>": 5, "<mask>": 6,
}
_SPECIAL_KWARGS = {
    "bos_token": "<s>", "eos_token": "</s>", "unk_token": "<unk>",
    "pad_token": "<pad>", "mask_token": "<mask>",
}

BUNDLED_TOKENIZER_DIR: Path = Path(__file__).resolve().parent / "assets" / "tokenizer"
BUNDLED_ALIASES = ("bundled",)
_BUNDLED_NAME_PREFIX = "bundled-korean-bpe"

SequenceKind = Literal["source", "target"]


def load_tokenizer(name_or_path: str | Path | None = None) -> PreTrainedTokenizerFast:
    """Load a tokenizer with KoBART's special tokens and check their ids.

    ``None`` or ``"bundled"`` gives the bundled offline tokenizer; a directory is loaded with
    ``from_pretrained`` (``tokenizer.json`` or HF tokenizer files inside); a ``*.json`` file is
    used as ``tokenizer_file``; anything else is treated as a Hugging Face Hub id.
    """
    if name_or_path is None or str(name_or_path) in BUNDLED_ALIASES:
        tokenizer = _load_local(BUNDLED_TOKENIZER_DIR, what="bundled tokenizer")
    elif _looks_like_path(name_or_path):
        tokenizer = _load_local(Path(name_or_path).expanduser(), what="tokenizer path")
    else:
        tokenizer = _load_from_hub(str(name_or_path))
    check_special_ids(tokenizer, source=str(name_or_path or BUNDLED_TOKENIZER_DIR))
    return tokenizer


def _looks_like_path(name_or_path: str | Path) -> bool:
    """True when the argument must be a local path (hub ids are ``name`` or ``owner/name``)."""
    if isinstance(name_or_path, Path) or Path(name_or_path).expanduser().exists():
        return True
    text = str(name_or_path)
    return text.endswith(".json") or text.startswith(("/", "./", "../", "~", "\\")) or ":" in text


def _load_local(path: Path, *, what: str) -> PreTrainedTokenizerFast:
    """Load from a directory or a ``tokenizer.json`` file, naming the path when it is missing."""
    if not path.exists():
        if path == BUNDLED_TOKENIZER_DIR:
            raise FileNotFoundError(
                f"The bundled tokenizer is missing at {str(path)!r}; rebuild it with "
                "`python scripts/train_tokenizer.py` (or `make tokenizer`)."
            )
        raise FileNotFoundError(
            f"{what} {str(path)!r} does not exist; pass a directory holding tokenizer.json, "
            "a path to a tokenizer .json file, a hub id, or None for the bundled tokenizer."
        )
    if path.is_dir():
        tokenizer = PreTrainedTokenizerFast.from_pretrained(str(path), **_SPECIAL_KWARGS)
    elif path.suffix == ".json":
        tokenizer = PreTrainedTokenizerFast(tokenizer_file=str(path), **_SPECIAL_KWARGS)
    else:
        raise ValueError(
            f"{what} {str(path)!r} is a file but not a .json tokenizer file; pass a directory "
            "or a tokenizer.json path."
        )
    tokenizer.name_or_path = str(path)
    return tokenizer


def _load_from_hub(hub_id: str) -> PreTrainedTokenizerFast:
    """Hub download through ``from_pretrained``; offline failures become one readable error."""
    try:
        return PreTrainedTokenizerFast.from_pretrained(hub_id, **_SPECIAL_KWARGS)
    except (OSError, ValueError) as exc:
        # transformers reports a missing download as "couldn't instantiate the backend
        # tokenizer" or a repo-id format error; neither says the hub was the problem.
        raise OSError(
            f"Could not load tokenizer {hub_id!r}: it is not a local path and loading it from "
            f"the Hugging Face Hub failed ({type(exc).__name__}: {_one_line(exc)}). "
            "Without network access pass a local directory or tokenizer.json path, or None "
            "for the bundled offline tokenizer."
        ) from exc


def _one_line(exc: BaseException, limit: int = 240) -> str:
    """The exception text on one line, shortened: transformers' messages span many lines."""
    text = " ".join(str(exc).split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


def check_special_ids(tokenizer: PreTrainedTokenizerFast, *, source: str = "tokenizer") -> None:
    """Raise ``ValueError`` unless every KoBART special token has KoBART's id."""
    backend = tokenizer.backend_tokenizer
    for token, expected in KOBART_SPECIAL_IDS.items():
        actual = backend.token_to_id(token)
        if actual != expected:
            raise ValueError(
                f"Tokenizer from {source!r} does not follow KoBART's special-token layout: "
                f"{token!r} should have id {expected} but has id {actual} "
                f"(expected layout: {KOBART_SPECIAL_IDS})."
            )


def add_special_ids(
    body: Sequence[int], kind: SequenceKind, max_length: int
) -> tuple[list[int], bool]:
    """Wrap one row's token ids with specials and cut it to ``max_length``, keeping ``</s>``.

    Returns the ids and whether any body token was dropped.
    """
    if kind == "source":
        prefix = [BOS_ID]
    elif kind == "target":
        prefix = []
    else:
        raise ValueError(f"kind must be 'source' or 'target', got {kind!r}.")
    room = max_length - len(prefix) - 1
    if room < 0:
        raise ValueError(
            f"max_length={max_length} leaves no room for the special tokens of a {kind} "
            f"(needs at least {len(prefix) + 1})."
        )
    return prefix + list(body[:room]) + [EOS_ID], len(body) > room


def _encode(
    tokenizer: PreTrainedTokenizerFast, texts: Sequence[str], max_length: int, kind: SequenceKind
) -> tuple[list[list[int]], list[bool]]:
    """Tokenise all texts in one batched call, then add specials row by row."""
    texts = list(texts)
    for index, text in enumerate(texts):
        if not isinstance(text, str):
            raise TypeError(f"texts[{index}] must be a str, got {type(text).__name__}: {text!r}.")
    if not texts:
        return [], []
    bodies = tokenizer(texts, add_special_tokens=False)["input_ids"]
    rows = [add_special_ids(body, kind, max_length) for body in bodies]
    return [ids for ids, _ in rows], [cut for _, cut in rows]


def encode_sources(
    tokenizer: PreTrainedTokenizerFast, texts: Sequence[str], max_length: int
) -> tuple[list[list[int]], list[bool]]:
    """Encoder inputs ``[<s>] + tokens + [</s>]`` per text, and which rows were truncated."""
    return _encode(tokenizer, texts, max_length, "source")


def encode_targets(
    tokenizer: PreTrainedTokenizerFast, texts: Sequence[str], max_length: int
) -> tuple[list[list[int]], list[bool]]:
    """Labels ``tokens + [</s>]`` per text, and which rows were truncated."""
    return _encode(tokenizer, texts, max_length, "target")


def _fingerprint_json(tokenizer_json: str) -> str:
    # Truncation/padding are runtime switches that do not change the id mapping; dropping them
    # (and sorting keys) keeps the fingerprint stable across load paths and later settings.
    state = json.loads(tokenizer_json)
    state.pop("truncation", None)
    state.pop("padding", None)
    canonical = json.dumps(state, sort_keys=True, ensure_ascii=False, separators=(",", ":"))
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()


def tokenizer_fingerprint(tokenizer: PreTrainedTokenizerFast) -> str:
    """sha256 hex of the backend tokenizer JSON (normaliser, pre-tokenizer, model, specials)."""
    return _fingerprint_json(tokenizer.backend_tokenizer.to_str())


@lru_cache(maxsize=1)
def _bundled_fingerprint() -> str | None:
    """Fingerprint of the bundled asset, or None while it has not been built yet."""
    if not (BUNDLED_TOKENIZER_DIR / "tokenizer.json").is_file():
        return None
    return tokenizer_fingerprint(load_tokenizer(None))


def tokenizer_name(tokenizer: PreTrainedTokenizerFast) -> str:
    """``bundled-korean-bpe-<N>k`` for the bundled tokenizer, else the path or hub id it came from."""
    if tokenizer_fingerprint(tokenizer) == _bundled_fingerprint():
        return f"{_BUNDLED_NAME_PREFIX}-{round(len(tokenizer) / 1000)}k"
    return str(tokenizer.name_or_path or "unnamed-tokenizer")
