"""A rule-based Korean formality classifier that reads sentence-final endings.

Korean marks the speech level on the last predicate of a sentence: 하십시오체 (``-ㅂ니다``,
``-습니까``, ``-십시오``) and 해요체 (``-요``, ``-죠``) are polite; 해체/해라체 (``-어``,
``-아``, ``-지``, ``-냐``, ``-다``, ...) are not. Style accuracy for the style-transfer task is
the share of outputs this classifier calls formal.

Why rules and not a model: the decision really is made by a handful of endings, the rules are
auditable, and they need no morphological analyser (kiwipiepy/mecab are not available here).
Jamo matter: ``합니다`` is polite because the syllable before ``니다`` carries a final ㅂ,
while ``가니까`` ("because it goes") is not, so the check decomposes syllables.

The text is scanned from its end, word by word, skipping punctuation, emoticons (``^^``,
``ㅋㅋ``, ``ㅠㅠ``, emoji) and words that carry no speech level (nouns with particles in
inverted sentences such as ``굽습니다 제 빵집에서는.``). The first word with a decisive
ending decides; a text without one is "neutral", which does not count as formal.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal

Label = Literal["formal", "informal", "neutral"]

_HANGUL_BASE = 0xAC00
_HANGUL_LAST = 0xD7A3
# A syllable is 0xAC00 + (initial * 21 + medial) * 28 + final; final 17 is ㅂ, and the
# medials are numbered in the order of _VOWELS.
_JONG_BIEUP = 17
_VOWELS = "ㅏㅐㅑㅒㅓㅔㅕㅖㅗㅘㅙㅚㅛㅜㅝㅞㅟㅠㅡㅢㅣ"

#: Words (runs of Hangul syllables, Latin letters or digits); jamo-only runs such as ``ㅋㅋ``
#: and ``ㅠㅠ`` and all punctuation/emoji fall between words and are ignored.
_WORD_RE = re.compile(r"[\uac00-\ud7a3A-Za-z0-9]+")

#: Nouns that end in 요 without being the polite particle (필요 "need", 중요 "importance").
_YO_NOUNS = frozenset({"필요", "불필요", "중요", "주요", "수요", "소요", "강요", "동요", "민요", "요요"})
#: Whole words whose level is fixed: polite yes/no vs. casual yes/no, greetings and thanks.
_FORMAL_WORDS = frozenset({"네", "예", "아니요", "아뇨"})
_INFORMAL_WORDS = frozenset({"응", "웅", "어", "엉", "아니", "안녕", "그래", "고마워", "미안"})
#: Casual final syllables that the vowel rule below does not cover: 먹었군, 할걸, 있거든,
#: 먹으렴, 좋잖, 먹었니, 했지, 하냐고 (not 구: 친구, 도구 are nouns).
_INFORMAL_SYLLABLES = frozenset({"군", "걸", "든", "렴", "람", "잖", "던", "니", "지", "고"})
#: Vowels of open syllables that end casual 해체/해라체 forms: 가/와/봐/해/돼/줘/써/셔, and
#: 다/라/자/야/냐/네/데/래/게/까 (the polite forms all end in 요/죠/다-after-ㅂ instead).
_INFORMAL_VOWELS = frozenset("ㅏㅐㅑㅓㅔㅕㅘㅙㅝ")


@dataclass(frozen=True)
class FormalityResult:
    """The decision and the word (ending) that made it; ``word`` is "" for neutral text."""

    label: Label
    word: str

    @property
    def is_formal(self) -> bool:
        return self.label == "formal"


def _split_syllable(char: str) -> tuple[int, int, int] | None:
    """(initial, medial, final) jamo indices of a Hangul syllable, or None for other characters."""
    code = ord(char)
    if not _HANGUL_BASE <= code <= _HANGUL_LAST:
        return None
    offset = code - _HANGUL_BASE
    return offset // 588, (offset % 588) // 28, offset % 28


def _has_final_bieup(char: str) -> bool:
    parts = _split_syllable(char)
    return parts is not None and parts[2] == _JONG_BIEUP


def _is_formal_word(word: str) -> bool:
    """True when ``word`` ends in a polite (하십시오체 or 해요체) sentence ending."""
    if word in _FORMAL_WORDS:
        return True
    if word.endswith(("요", "죠")):
        # 요 after a noun like 필요 is not the polite particle.
        return word not in _YO_NOUNS
    if word.endswith(("시오", "소서")):
        return True
    # -ㅂ니다/-습니다, -ㅂ니까/-습니까 and -ㅂ시다: the syllable before carries a final ㅂ
    # (합, 입, 습, 갑 ...), unlike the casual connective -니까 in 가니까 or 있으니까.
    for tail in ("니다", "니까", "시다", "니당"):
        if word.endswith(tail) and len(word) > len(tail) and _has_final_bieup(word[-len(tail) - 1]):
            return True
    return False


def _is_informal_word(word: str) -> bool:
    """True when ``word`` ends in a casual (해체/해라체) sentence ending."""
    if word in _INFORMAL_WORDS:
        return True
    last = word[-1]
    if last in _INFORMAL_SYLLABLES:
        return True
    parts = _split_syllable(last)
    if parts is None or parts[2] != 0:
        return False
    return _VOWELS[parts[1]] in _INFORMAL_VOWELS


def _candidate_words(text: str) -> list[str]:
    """Words from last to first that may carry the speech level.

    A one-syllable word counts only where a sentence or clause ends (before punctuation or at
    the end): 와 in ``빨리 와`` is a casual verb, but 제/내/그 in the middle of an inverted
    sentence are pronouns or determiners whose vowel would fool the ending rules.
    """
    matches = list(_WORD_RE.finditer(text))
    words = []
    for index, match in enumerate(matches):
        gap_end = matches[index + 1].start() if index + 1 < len(matches) else len(text)
        at_boundary = index + 1 == len(matches) or text[match.end():gap_end].strip() != ""
        word = match.group()
        if len(word) > 1 or at_boundary or word in _FORMAL_WORDS or word in _INFORMAL_WORDS:
            words.append(word)
    return words[::-1]


def classify_formality(text: str) -> FormalityResult:
    """Classify ``text`` as formal, informal or neutral by its last decisive ending."""
    for word in _candidate_words(text):
        if _is_formal_word(word):
            return FormalityResult("formal", word)
        if _is_informal_word(word):
            return FormalityResult("informal", word)
    return FormalityResult("neutral", "")


def is_formal(text: str) -> bool:
    """Whether ``text`` ends in a polite speech level (neutral text is not formal)."""
    return classify_formality(text).is_formal


def formal_share(texts: list[str]) -> float:
    """Percentage (0-100) of ``texts`` classified formal; 0.0 for an empty list."""
    if not texts:
        return 0.0
    return 100.0 * sum(is_formal(text) for text in texts) / len(texts)
