"""style_transfer rows: casual (반말) Korean and its polite (합쇼체/해요체) rewrite.

Six families of sentences, each a product of slots (openers, times, objects, verbs, tenses):
requests, "come here" orders, first-person statements, questions to the listener (subject
honorific), suggestions and 뭐-questions. Slot values come in (casual, formal) pairs where the
wording itself changes (이거 -> 이것, 이따가 -> 잠시 후에, 같이 -> 함께), and every verb ending is
computed by :mod:`.korean`, so 먹었어 becomes 드셨습니까 for a listener but 먹었습니다 for
the speaker.
"""

from __future__ import annotations

from typing import NamedTuple

from multi_task_kobart.data.corpus.korean import (
    Candidate, Verb, banmal, connective, formal, honorific, honorific_stem, josa, prospective,
    suggest,
)


class Action(NamedTuple):
    """An object and the verb done to it; ``formal_obj`` is the polite wording of the object."""

    obj: str
    formal_obj: str
    verb: Verb


class Activity(NamedTuple):
    """Something done at a place; ``obj`` is empty for 하-verbs such as 운동하다."""

    place: str
    obj: str
    verb: Verb


_EAT = Verb("먹", honorific="드시")

_ACTIONS = [
    Action("이거", "이것", Verb("도와주")), Action("그거", "그것", Verb("가져다주")),
    Action("창문", "창문", Verb("열")), Action("문", "문", Verb("닫")),
    Action("불", "불", Verb("끄")), Action("에어컨", "에어컨", Verb("켜")),
    Action("이 서류", "이 서류", Verb("확인하")), Action("보고서", "보고서", Verb("보내")),
    Action("회의 자료", "회의 자료", Verb("정리하")), Action("짐", "짐", Verb("옮기")),
    Action("사진", "사진", Verb("찍")), Action("내 가방", "제 가방", Verb("들")),
    Action("주소", "주소", Verb("적")), Action("전화번호", "전화번호", Verb("알려주")),
    Action("그 책", "그 책", Verb("빌려주")), Action("저거", "저것", Verb("치우")),
    Action("이름", "성함", Verb("쓰")), Action("일정", "일정", Verb("바꾸")),
    Action("음악 소리", "음악 소리", Verb("줄이")), Action("택배", "택배", Verb("받")),
    Action("발표 자료", "발표 자료", Verb("만들")), Action("이 문제", "이 문제", Verb("풀")),
    Action("영수증", "영수증", Verb("챙기")), Action("커피", "커피", Verb("사 오")),
    Action("청소기", "청소기", Verb("돌리")),
]
_REQUEST_TIMES = [
    ("", ""), ("지금 ", "지금 "), ("이따가 ", "잠시 후에 "), ("내일까지 ", "내일까지 "),
    ("오늘 안에 ", "오늘 중으로 "), ("퇴근 전에 ", "퇴근 전에 "), ("빨리 ", "서둘러 "),
    ("점심 먹고 ", "점심 식사 후에 "),
]
_REQUEST_OPENERS = [("", ""), ("야, ", ""), ("저기, ", "저, "), ("미안한데 ", "죄송하지만 ")]

_ACTIVITIES = [
    Activity("도서관", "책", Verb("읽")), Activity("카페", "커피", Verb("마시")),
    Activity("식당", "점심", _EAT), Activity("공원", "", Verb("산책하")),
    Activity("집", "영화", Verb("보")), Activity("회사", "보고서", Verb("쓰")),
    Activity("마트", "장", Verb("보")), Activity("학원", "영어", Verb("배우")),
    Activity("체육관", "", Verb("운동하")), Activity("백화점", "선물", Verb("사")),
    Activity("도서관", "", Verb("공부하")), Activity("집", "김치찌개", Verb("만들")),
    Activity("노래방", "노래", Verb("부르", "르")), Activity("공원", "자전거", Verb("타")),
    Activity("카페", "친구", Verb("만나")), Activity("병원", "진료", Verb("받")),
    Activity("사무실", "", Verb("야근하")), Activity("집", "음악", Verb("듣", "ㄷ")),
    Activity("서점", "잡지", Verb("사")), Activity("수영장", "", Verb("수영하")),
]
# (casual time, formal time, tense): the tense follows from the time word.
_TIMES = [
    ("어제", "어제", "past"), ("아까", "조금 전에", "past"), ("지난주에", "지난주에", "past"),
    ("지난 주말에", "지난 주말에", "past"), ("오늘", "오늘", "past"),
    ("그저께", "그제", "past"), ("내일", "내일", "future"), ("이따가", "잠시 후에", "future"),
    ("다음 주에", "다음 주에", "future"), ("이번 주말에", "이번 주말에", "future"),
    ("모레", "모레", "future"), ("요즘", "요즘", "present"), ("가끔", "가끔", "present"),
    ("주말마다", "주말마다", "present"), ("보통", "보통", "present"),
]
_SUBJECTS = [("", ""), ("나 ", "저는 "), ("우리 ", "저희는 ")]
_QUESTION_OPENERS = [("", ""), ("너 ", ""), ("혹시 ", "혹시 ")]
_SUGGEST_OPENERS = [("", ""), ("우리 ", "")]
_MOVES = [
    ("", Verb("오")), ("여기로 ", Verb("오")), ("사무실로 ", Verb("오")),
    ("회의실로 ", Verb("들어오")), ("1층 로비로 ", Verb("내려오")), ("정문 앞으로 ", Verb("나오")),
    ("옥상으로 ", Verb("올라오")), ("역 앞으로 ", Verb("가")), ("병원으로 ", Verb("가")),
]
_MOVE_ADVERBS = ["", "빨리 ", "지금 ", "잠깐 ", "10분 안에 ", "내일 아침에 ", "천천히 "]
_WH_VERBS = [_EAT, Verb("하"), Verb("보"), Verb("사"), Verb("읽"), Verb("마시")]


def _gives(verb: Verb) -> bool:
    """Verbs that already end in the benefactive 주다 (도와주다) take no second 주다."""
    return len(verb.stem) > 1 and verb.stem.endswith("주")


def _honorific_prospective(verb: Verb) -> str:
    """Honorific ㄹ-form: 가시 -> 가실, 드시 -> 드실 (every honorific stem ends in 시)."""
    return honorific_stem(verb)[:-1] + "실"


def _request_pair(action: Action, form: str, time: tuple[str, str], opener: tuple[str, str]):
    """One casual request and its polite rewrite; ``form`` picks the sentence type."""
    verb, gives = action.verb, _gives(action.verb)
    ao = connective(verb)
    obj_with = josa(action.formal_obj, "을/를")
    if form == "ask":
        casual = f"{action.obj} 좀 {ao if gives else ao + ' 줘'}."
        polite = f"{action.formal_obj} 좀 {honorific_stem(verb) + '겠습니까' if gives else ao + ' 주시겠습니까'}?"
    elif form == "order":
        casual = f"{action.obj} {ao}."
        polite = f"{obj_with} {honorific_stem(verb) if gives else ao + ' 주시'}기 바랍니다."
    elif form == "can":
        casual = f"{action.obj} {prospective(verb) if gives else ao + ' 줄'} 수 있어?"
        polite = f"{obj_with} {_honorific_prospective(verb) if gives else ao + ' 주실'} 수 있나요?"
    else:  # "will"
        casual = f"{action.obj} {prospective(verb) if gives else ao + ' 줄'}래?"
        polite = f"{obj_with} {honorific_stem(verb) + '겠어요' if gives else ao + ' 주시겠어요'}?"
    return opener[0] + time[0] + casual, opener[1] + time[1] + polite


def _requests() -> list[Candidate]:
    rows = []
    for a_index, action in enumerate(_ACTIONS):
        for form in ("ask", "order", "can", "will"):
            for time in _REQUEST_TIMES:
                for opener in _REQUEST_OPENERS:
                    casual, polite = _request_pair(action, form, time, opener)
                    key = ("request", str(a_index), form, time[0], opener[0])
                    rows.append(Candidate(key, casual, polite))
    return rows


def _moves() -> list[Candidate]:
    rows = []
    for place, verb in _MOVES:
        ao = connective(verb)
        for adverb in _MOVE_ADVERBS:
            casual_order, casual_ask = f"{adverb}{place}{ao}.", f"{adverb}{place}{ao} 줘."
            rows.append(Candidate(("move", place, verb.stem, adverb, "order"), casual_order,
                                  f"{adverb}{place}{ao} 주시기 바랍니다."))
            rows.append(Candidate(("move", place, verb.stem, adverb, "ask"), casual_ask,
                                  f"{adverb}{place}{ao} 주시겠습니까?"))
    return rows


def _phrase(activity: Activity, polite: bool) -> str:
    """'도서관에서 책' (casual drops the object particle) or '도서관에서 책을'."""
    obj = josa(activity.obj, "을/를") if polite and activity.obj else activity.obj
    return f"{activity.place}에서 {obj} ".replace("  ", " ")


def _statements() -> list[Candidate]:
    rows = []
    for a_index, act in enumerate(_ACTIVITIES):
        for casual_time, formal_time, tense in _TIMES:
            ending = (prospective(act.verb) + " 예정입니다" if tense == "future"
                      else formal(act.verb, tense))
            for subject, formal_subject in _SUBJECTS:
                casual = f"{subject}{casual_time} {_phrase(act, False)}{banmal(act.verb, tense)}."
                polite = f"{formal_subject}{formal_time} {_phrase(act, True)}{ending}."
                rows.append(Candidate(("statement", str(a_index), casual_time, subject), casual, polite))
    return rows


def _questions() -> list[Candidate]:
    rows = []
    for a_index, act in enumerate(_ACTIVITIES):
        for casual_time, formal_time, tense in _TIMES:
            if tense == "future":
                ending = _honorific_prospective(act.verb) + " 예정입니까"
            else:
                ending = honorific(act.verb, tense, question=True)
            for opener, formal_opener in _QUESTION_OPENERS:
                casual = f"{opener}{casual_time} {_phrase(act, False)}{banmal(act.verb, tense)}?"
                polite = f"{formal_opener}{formal_time} {_phrase(act, True)}{ending}?"
                rows.append(Candidate(("question", str(a_index), casual_time, opener), casual, polite))
    return rows


def _suggestions() -> list[Candidate]:
    rows = []
    future_times = [t for t in _TIMES if t[2] == "future"] + [("오늘 저녁에", "오늘 저녁에", "future")]
    for a_index, act in enumerate(_ACTIVITIES):
        for casual_time, formal_time, _ in future_times:
            for opener, formal_opener in _SUGGEST_OPENERS:
                casual = f"{opener}{casual_time} 같이 {_phrase(act, False)}{suggest(act.verb)}."
                polite = (f"{formal_opener}{formal_time} 함께 {_phrase(act, True)}"
                          f"{prospective(act.verb)}까요?")
                rows.append(Candidate(("suggest", str(a_index), casual_time, opener), casual, polite))
    return rows


def _wh_questions() -> list[Candidate]:
    rows = []
    for verb in _WH_VERBS:
        for casual_time, formal_time, tense in _TIMES:
            if tense == "future":
                ending = _honorific_prospective(verb) + " 예정입니까"
            else:
                ending = honorific(verb, tense, question=True)
            for opener, formal_opener in _QUESTION_OPENERS:
                casual = f"{opener}{casual_time} 뭐 {banmal(verb, tense)}?"
                polite = f"{formal_opener}{formal_time} 무엇을 {ending}?"
                rows.append(Candidate(("wh", verb.stem, casual_time, opener), casual, polite))
    return rows


def style_transfer_families() -> list[list[Candidate]]:
    """All candidate rows, one list per sentence family (sampled evenly by the caller)."""
    return [_requests(), _moves(), _statements(), _questions(), _suggestions(), _wh_questions()]
