"""Korean grammar helpers for the bundled corpus: particles and verb conjugation.

The corpus is generated from templates, so every particle (은/는, 이/가, 을/를, ...) and every
verb ending must be computed from the word it attaches to; a hard-coded string would be wrong for
half the vocabulary. Hangul syllables are composed arithmetically
(``0xAC00 + (initial * 21 + medial) * 28 + final``), which is how the Unicode block is laid out.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

_HANGUL_FIRST, _HANGUL_LAST = 0xAC00, 0xD7A3
# Medial (vowel) indices inside a syllable.
_A, _AE, _EO, _E, _YEO, _O, _WA, _WAE, _OE = 0, 1, 4, 5, 6, 8, 9, 10, 11
_U, _WO, _WI, _EU, _I = 13, 14, 16, 18, 20
# Final (batchim) indices.
_NO_FINAL, _DIGEUT, _RIEUL, _BIEUP, _SIOT, _SSANG_SIOT = 0, 7, 8, 17, 19, 20
# Digits are read aloud (일, 이, 삼, ...): whether that reading ends in a batchim, and in ㄹ.
_DIGIT_FINAL = {"0": True, "1": True, "2": False, "3": True, "4": False, "5": False,
                "6": True, "7": True, "8": True, "9": False}
_DIGIT_RIEUL = {"1", "7", "8"}


class Candidate(NamedTuple):
    """One generated example before the train/test split.

    ``key`` is the slot combination that produced it; the split is decided on the key, so two
    rows built from the same slots always land in the same split.
    """

    key: tuple[str, ...]
    input: str
    target: str
    answers: tuple[str, ...] = ()


def is_hangul(char: str) -> bool:
    return len(char) == 1 and _HANGUL_FIRST <= ord(char) <= _HANGUL_LAST


def split_syllable(char: str) -> tuple[int, int, int]:
    """(initial, medial, final) indices of one Hangul syllable."""
    if not is_hangul(char):
        raise ValueError(f"{char!r} is not a precomposed Hangul syllable (U+AC00..U+D7A3).")
    offset = ord(char) - _HANGUL_FIRST
    return offset // (21 * 28), (offset // 28) % 21, offset % 28


def join_syllable(initial: int, medial: int, final: int = _NO_FINAL) -> str:
    return chr(_HANGUL_FIRST + (initial * 21 + medial) * 28 + final)


def _with_final(char: str, final: int) -> str:
    initial, medial, _ = split_syllable(char)
    return join_syllable(initial, medial, final)


def _last_sound(word: str) -> tuple[bool, bool]:
    """(ends in a batchim, that batchim is ㄹ) for the last pronounced character of ``word``."""
    stripped = word.rstrip(" .,!?)'\"》")
    if not stripped:
        raise ValueError(f"Cannot attach a particle to {word!r}: it has no letters.")
    last = stripped[-1]
    if is_hangul(last):
        final = split_syllable(last)[2]
        return final != _NO_FINAL, final == _RIEUL
    if last in _DIGIT_FINAL:
        return _DIGIT_FINAL[last], last in _DIGIT_RIEUL
    raise ValueError(
        f"Cannot choose a particle for {word!r}: it ends in {last!r}, not Hangul or a digit."
    )


def has_batchim(word: str) -> bool:
    return _last_sound(word)[0]


# Particle pairs: (form after a batchim, form after a vowel).
_PARTICLES = {
    "은/는": ("은", "는"), "이/가": ("이", "가"), "을/를": ("을", "를"), "과/와": ("과", "와"),
    "이랑/랑": ("이랑", "랑"), "아/야": ("아", "야"), "이나/나": ("이나", "나"),
    "이에요/예요": ("이에요", "예요"), "이야/야": ("이야", "야"), "이라고/라고": ("이라고", "라고"),
    "이며/며": ("이며", "며"), "이란/란": ("이란", "란"), "이고/고": ("이고", "고"),
    "이다/다": ("이다", "다"),
}


def josa(word: str, pair: str) -> str:
    """``word`` followed by the right form of a particle, e.g. ``josa("책", "을/를") == "책을"``."""
    if pair == "으로/로":
        final, rieul = _last_sound(word)
        return word + ("으로" if final and not rieul else "로")
    if pair not in _PARTICLES:
        raise ValueError(f"Unknown particle {pair!r}; known: {sorted(_PARTICLES) + ['으로/로']}.")
    after_batchim, after_vowel = _PARTICLES[pair]
    return word + (after_batchim if has_batchim(word) else after_vowel)


@dataclass(frozen=True)
class Verb:
    """A verb or adjective stem (the dictionary form without 다) with its conjugation class.

    ``irregular`` is one of "", "ㅂ", "ㄷ", "르", "ㅅ"; ``honorific`` overrides the subject-
    honorific stem for suppletive verbs (먹 -> 드시, 자 -> 주무시).
    """

    stem: str
    irregular: str = ""
    honorific: str = ""

    def __post_init__(self) -> None:
        if self.irregular not in ("", "ㅂ", "ㄷ", "르", "ㅅ"):
            raise ValueError(f"Unknown irregular class {self.irregular!r} for {self.stem!r}.")
        if not self.stem or not is_hangul(self.stem[-1]):
            raise ValueError(f"Verb stem must end in a Hangul syllable, got {self.stem!r}.")

    @property
    def head(self) -> str:
        return self.stem[:-1]

    @property
    def last(self) -> str:
        return self.stem[-1]


def _bright(char: str) -> bool:
    """Vowel harmony: ㅏ and ㅗ take 아, every other vowel takes 어."""
    return split_syllable(char)[1] in (_A, _O)


def _contract_open(v: Verb) -> str:
    """아/어 form of a stem whose last syllable has no batchim."""
    initial, medial, _ = split_syllable(v.last)
    fused = {_A: _A, _EO: _EO, _AE: _AE, _E: _E, _YEO: _YEO, _O: _WA, _U: _WO, _I: _YEO, _OE: _WAE}
    if medial in fused:
        return v.head + join_syllable(initial, fused[medial])
    if medial == _EU:  # 쓰 -> 써, 바쁘 -> 바빠: ㅡ drops and the vowel before it decides.
        bright = bool(v.head) and _bright(v.head[-1])
        return v.head + join_syllable(initial, _A if bright else _EO)
    return v.stem + "어"  # 쉬 -> 쉬어, 띄 -> 띄어


def connective(v: Verb) -> str:
    """The 아/어 form (해체 ending), e.g. 가 -> 가, 먹 -> 먹어, 하 -> 해, 돕 -> 도와."""
    if v.last == "하":
        return v.head + "해"
    if v.irregular == "ㅂ":
        bare = v.head + _with_final(v.last, _NO_FINAL)
        return bare + ("와" if v.stem in ("돕", "곱") else "워")
    if v.irregular == "ㄷ":
        return v.head + _with_final(v.last, _RIEUL) + ("아" if _bright(v.last) else "어")
    if v.irregular == "르":
        before = v.head[-1]
        return v.head[:-1] + _with_final(before, _RIEUL) + ("라" if _bright(before) else "러")
    if v.irregular == "ㅅ":
        return v.head + _with_final(v.last, _NO_FINAL) + ("아" if _bright(v.last) else "어")
    if split_syllable(v.last)[2] == _NO_FINAL:
        return _contract_open(v)
    return v.stem + ("아" if _bright(v.last) else "어")


def past(v: Verb) -> str:
    """Past stem with 았/었 fused in, e.g. 가 -> 갔, 먹 -> 먹었, 하 -> 했 (add 어 or 습니다)."""
    form = connective(v)
    return form[:-1] + _with_final(form[-1], _SSANG_SIOT)


def banmal(v: Verb, tense: str = "present") -> str:
    """Casual 해체 ending: present 가/먹어, past 갔어/먹었어, future 갈 거야."""
    if tense == "present":
        return connective(v)
    if tense == "past":
        return past(v) + "어"
    if tense == "future":
        return prospective(v) + " 거야"
    raise ValueError(f"tense must be 'present', 'past' or 'future', got {tense!r}.")


def _formal_from(stem: str, ending: str) -> str:
    """Attach 습니다/습니까 (ending) to a stem: ㅂ니다 after a vowel or ㄹ (ㄹ drops)."""
    final = split_syllable(stem[-1])[2]
    if final in (_NO_FINAL, _RIEUL):
        return stem[:-1] + _with_final(stem[-1], _BIEUP) + ending[1:]
    return stem + ending


def formal(v: Verb, tense: str = "present", question: bool = False) -> str:
    """합쇼체 without subject honorific: 갑니다, 먹었습니다, 만듭니까."""
    ending = "습니까" if question else "습니다"
    if tense == "present":
        return _formal_from(v.stem, ending)
    if tense == "past":
        return past(v) + ending
    raise ValueError(f"formal() covers 'present' and 'past', got {tense!r}.")


def honorific_stem(v: Verb) -> str:
    """Subject-honorific stem ending in 시: 가시, 읽으시, 만드시, 도우시, 들으시, 드시."""
    if v.honorific:
        return v.honorific
    final = split_syllable(v.last)[2]
    if v.irregular == "ㅂ":
        return v.head + _with_final(v.last, _NO_FINAL) + "우시"
    if v.irregular == "ㄷ":
        return v.head + _with_final(v.last, _RIEUL) + "으시"
    if v.irregular == "ㅅ":
        return v.head + _with_final(v.last, _NO_FINAL) + "으시"
    if final == _RIEUL:
        return v.head + _with_final(v.last, _NO_FINAL) + "시"
    return v.stem + ("시" if final == _NO_FINAL else "으시")


def honorific(v: Verb, tense: str = "present", question: bool = False) -> str:
    """합쇼체 with subject honorific: 가십니다, 읽으셨습니까, 드십니까."""
    stem = honorific_stem(v)
    ending = "습니까" if question else "습니다"
    if tense == "present":
        return _formal_from(stem, ending)
    if tense == "past":
        return stem[:-1] + "셨" + ending
    raise ValueError(f"honorific() covers 'present' and 'past', got {tense!r}.")


def prospective(v: Verb) -> str:
    """ㄹ/을 adnominal form used before 거야/예정/수: 갈, 먹을, 만들, 도울, 들을."""
    final = split_syllable(v.last)[2]
    if v.irregular == "ㅂ":
        return v.head + _with_final(v.last, _NO_FINAL) + "울"
    if v.irregular == "ㄷ":
        return v.head + _with_final(v.last, _RIEUL) + "을"
    if v.irregular == "ㅅ":
        return v.head + _with_final(v.last, _NO_FINAL) + "을"
    if final == _NO_FINAL:
        return v.head + _with_final(v.last, _RIEUL)
    return v.stem if final == _RIEUL else v.stem + "을"


def suggest(v: Verb) -> str:
    """Casual suggestion (청유형): 가자, 먹자, 만들자."""
    return v.stem + "자"


def polite(v: Verb) -> str:
    """해요체 present: 가요, 먹어요, 해요."""
    return connective(v) + "요"
