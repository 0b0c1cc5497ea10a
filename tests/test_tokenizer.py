"""Tokenizer loading, KoBART special-id layout, source/target encoding and exact round trips."""

from __future__ import annotations

import json
import re

import pytest

from multi_task_kobart.data.corpus import generate_corpus
from multi_task_kobart.tasks import TASKS
from multi_task_kobart.tokenizer import (
    BOS_ID, BUNDLED_TOKENIZER_DIR, DECODER_START_ID, EOS_ID, KOBART_SPECIAL_IDS, LABEL_PAD, MASK_ID,
    PAD_ID, UNK_ID, add_special_ids, encode_sources, encode_targets, load_tokenizer,
    tokenizer_fingerprint, tokenizer_name,
)

SPEC_SENTENCES = [
    "이거 좀 도와주세요", "빨리 와", "이것을 도와주시겠습니까?", "빠른 시일 내에 방문해 주시기 바랍니다.",
    "A: 내일 회의 몇 시에요? B: 오후 2시입니다.", "내일 회의는 오후 2시입니다.",
    "[선생님] 파이썬이란?", "[친구] 주말에 뭐해?", "파이썬은 배우기 쉬운 프로그래밍 언어입니다.",
    "특별한 계획은 없어. 너는?", "질문: 서울의 인구는?", "질문: 인공지능의 장점은?",
    "서울의 인구는 약 1천만 명입니다.",
]


@pytest.fixture(scope="module")
def bundled():
    return load_tokenizer()


@pytest.fixture(scope="module")
def kobart(kobart_tokenizer_json):
    return load_tokenizer(kobart_tokenizer_json)


@pytest.fixture(scope="module")
def corpus_texts() -> list[str]:
    corpus = generate_corpus(0)
    rows = corpus["train"][:300] + corpus["test"][:300]
    return [text for row in rows for text in (row["input"], row["target"])]


def _round_trip(tokenizer, texts: list[str]) -> list[str]:
    ids = tokenizer(texts, add_special_tokens=False)["input_ids"]
    return [tokenizer.decode(row, skip_special_tokens=True) for row in ids]


def test_constants_follow_kobart():
    assert (BOS_ID, EOS_ID, PAD_ID, UNK_ID, MASK_ID) == (0, 1, 3, 5, 6)
    assert DECODER_START_ID == EOS_ID == 1 and LABEL_PAD == -100
    assert list(KOBART_SPECIAL_IDS.items()) == [
        ("<s>", 0), ("</s>", 1), ("<usr>", 2), ("<pad>", 3), ("<sys>", 4), ("<unk>", 5), ("<mask>", 6)]


@pytest.mark.parametrize("source", [None, "bundled", "dir", "json"])
def test_bundled_loads_offline_every_way(source):
    paths = {"dir": BUNDLED_TOKENIZER_DIR, "json": BUNDLED_TOKENIZER_DIR / "tokenizer.json"}
    tokenizer = load_tokenizer(paths.get(source, source))
    assert (tokenizer.bos_token_id, tokenizer.eos_token_id, tokenizer.pad_token_id,
            tokenizer.unk_token_id, tokenizer.mask_token_id) == (0, 1, 3, 5, 6)
    for token, expected in KOBART_SPECIAL_IDS.items():
        assert tokenizer.convert_tokens_to_ids(token) == expected
    assert tokenizer_name(tokenizer) == "bundled-korean-bpe-6k"


def test_bundled_asset_is_small_and_sized_as_documented(bundled):
    assert (BUNDLED_TOKENIZER_DIR / "tokenizer.json").stat().st_size < 1_000_000
    assert len(bundled) == 6000
    state = json.loads(bundled.backend_tokenizer.to_str())
    assert state["model"]["type"] == "BPE" and state["model"]["byte_fallback"] is True
    assert state["normalizer"]["type"] == "NFKC" and state["pre_tokenizer"]["type"] == "Metaspace"


def test_tokenizer_adds_no_specials_itself(bundled):
    ids = bundled("이거 좀 도와주세요.")["input_ids"]
    assert BOS_ID not in ids and EOS_ID not in ids


def test_encode_sources_layout_and_truncation(bundled):
    texts = ["이거 좀 도와주세요.", "A: 내일 회의 몇 시예요? B: 오후 2시입니다. A: 장소는 어디예요?", ""]
    bodies = bundled(texts, add_special_tokens=False)["input_ids"]
    ids, truncated = encode_sources(bundled, texts, max_length=8)
    assert ids[2] == [BOS_ID, EOS_ID] and truncated[2] is False
    for row, body, cut in zip(ids, bodies, truncated):
        assert row[0] == BOS_ID and row[-1] == EOS_ID and len(row) <= 8
        assert cut == (len(body) > 6)
        assert row[1:-1] == body[:6]
    assert truncated[1] is True


def test_encode_targets_layout_and_truncation(bundled):
    texts = ["파이썬은 배우기 쉬운 프로그래밍 언어입니다.", "네."]
    bodies = bundled(texts, add_special_tokens=False)["input_ids"]
    ids, truncated = encode_targets(bundled, texts, max_length=4)
    assert ids[1] == bodies[1] + [EOS_ID] and truncated[1] is False
    assert ids[0] == bodies[0][:3] + [EOS_ID] and truncated[0] is True
    assert encode_targets(bundled, [], max_length=4) == ([], [])


def test_special_id_helper_rejects_bad_arguments():
    assert add_special_ids([7, 8, 9], "source", 3) == ([BOS_ID, 7, EOS_ID], True)
    with pytest.raises(ValueError, match="max_length=1"):
        add_special_ids([7], "source", 1)
    with pytest.raises(ValueError, match="'decoder'"):
        add_special_ids([7], "decoder", 5)


def test_encode_rejects_non_strings(bundled):
    with pytest.raises(TypeError, match=r"texts\[1\]"):
        encode_sources(bundled, ["안녕", None], max_length=16)


def test_bundled_round_trip_of_corpus_is_exact(bundled, corpus_texts):
    assert _round_trip(bundled, corpus_texts) == corpus_texts
    assert _round_trip(bundled, SPEC_SENTENCES) == SPEC_SENTENCES


def test_bundled_spells_unseen_characters_as_bytes(bundled):
    text = "똠양꿍 먹을래? 岔子 😀"  # 똠 is outside KS X 1001; none of these are in the corpus
    ids = bundled(text, add_special_tokens=False)["input_ids"]
    assert UNK_ID not in ids
    assert bundled.decode(ids) == text


def test_missing_path_is_named(tmp_path):
    missing = tmp_path / "nowhere" / "tokenizer.json"
    with pytest.raises(FileNotFoundError, match=re.escape(str(missing))):
        load_tokenizer(missing)
    with pytest.raises(FileNotFoundError, match="nowhere"):
        load_tokenizer(str(tmp_path / "nowhere"))


def test_hub_id_failure_is_readable():
    # A repo that does not exist fails the same way offline (here) and online (404).
    with pytest.raises(OSError, match="'mtk-no-such-org/no-such-tokenizer'.*Hugging Face Hub"):
        load_tokenizer("mtk-no-such-org/no-such-tokenizer")


def test_wrong_special_layout_names_token_and_ids(tmp_path, bundled):
    state = json.loads(bundled.backend_tokenizer.to_str())
    vocab = state["model"]["vocab"]
    vocab["<pad>"], vocab["<sys>"] = 4, 3  # swap two specials
    for added in state["added_tokens"]:
        added["id"] = vocab[added["content"]]
    path = tmp_path / "swapped.json"
    path.write_text(json.dumps(state, ensure_ascii=False), encoding="utf-8")
    with pytest.raises(ValueError, match=r"'<pad>' should have id 3 but has id 4"):
        load_tokenizer(path)


def test_fingerprint_is_stable_across_loads_and_saves(bundled, tmp_path):
    assert tokenizer_fingerprint(bundled) == tokenizer_fingerprint(load_tokenizer("bundled"))
    bundled.save_pretrained(tmp_path / "checkpoint")
    reloaded = load_tokenizer(tmp_path / "checkpoint")
    assert tokenizer_fingerprint(reloaded) == tokenizer_fingerprint(bundled)
    assert tokenizer_name(reloaded) == "bundled-korean-bpe-6k"
    assert re.fullmatch(r"[0-9a-f]{64}", tokenizer_fingerprint(bundled))


# --- KoBART's own tokenizer from ../shared (skipped when it is absent) ---

def test_kobart_special_ids_and_vocab(kobart, kobart_tokenizer_json):
    assert len(kobart) == 30000
    for token, expected in KOBART_SPECIAL_IDS.items():
        assert kobart.convert_tokens_to_ids(token) == expected
    assert tokenizer_name(kobart) == str(kobart_tokenizer_json)


def test_kobart_fingerprint_differs_and_is_stable(kobart, bundled, kobart_tokenizer_json):
    assert tokenizer_fingerprint(kobart) != tokenizer_fingerprint(bundled)
    for source in (kobart_tokenizer_json, kobart_tokenizer_json.parent):
        assert tokenizer_fingerprint(load_tokenizer(source)) == tokenizer_fingerprint(kobart)


def test_kobart_encoding_layout(kobart):
    ids, truncated = encode_sources(kobart, ["이거 좀 도와주세요."], max_length=64)
    assert ids[0][0] == BOS_ID and ids[0][-1] == EOS_ID and truncated == [False]
    assert ids[0][1:-1] == kobart("이거 좀 도와주세요.", add_special_tokens=False)["input_ids"]


def test_kobart_round_trip_of_spec_and_corpus_text(kobart, corpus_texts):
    assert _round_trip(kobart, SPEC_SENTENCES) == SPEC_SENTENCES
    assert _round_trip(kobart, corpus_texts) == corpus_texts


def test_kobart_round_trip_of_realdata(kobart, bundled, realdata_dir):
    """Real rows decode to their NFKC form (NFKC maps e.g. ㅋ to ᄏ) unless KoBART hits <unk>."""
    texts = []
    for task in TASKS:
        lines = (realdata_dir / f"{task}.jsonl").read_text("utf-8").splitlines()
        rows = [json.loads(line) for line in lines]
        texts += [text for row in rows[:40] for text in (row["input"], row["target"])]
    normalise = kobart.backend_tokenizer.normalizer.normalize_str
    kobart_ids = kobart(texts, add_special_tokens=False)["input_ids"]
    known = [(text, ids) for text, ids in zip(texts, kobart_ids) if UNK_ID not in ids]
    assert len(known) >= 0.95 * len(texts)
    assert all(kobart.decode(ids) == normalise(text) for text, ids in known)
    exact = sum(kobart.decode(ids) == text for text, ids in known)
    assert exact >= 0.95 * len(known)
    # The bundled tokenizer never needs <unk>, so every real row comes back (NFKC-normalised).
    assert _round_trip(bundled, texts) == [normalise(text) for text in texts]
