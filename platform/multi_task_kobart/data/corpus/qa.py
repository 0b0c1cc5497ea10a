"""qa_generation rows over a synthetic fact table of fictional cities, companies and people.

Two input kinds, as in the SPEC and in KorQuAD-style data:

* ``질문: ... 문맥: ...`` — the context paragraph states every fact about the entity and the answer
  is a span of it; the target is the **short answer** (extractive, like KorQuAD).
* ``질문: ...`` alone (closed book) — the target is the **full answer sentence**, as in the
  SPEC's ``질문: 서울의 인구는?`` -> ``서울의 인구는 약 1천만 명입니다.``

``answers`` always lists every gold form (the target first, then the other forms), so F1/EM can
take the best match. The entities are fictional so the corpus never states a false real-world
fact; the fact table is drawn from ``random.Random`` and therefore depends on the seed.
"""

from __future__ import annotations

import random
from typing import NamedTuple

from multi_task_kobart.data.corpus.korean import Candidate, josa

_ROOTS = ["해솔", "가람", "누리", "한빛", "솔뫼", "다온", "별하", "이음", "청람", "새봄", "윤슬",
          "미리내", "아라", "하늬", "라온", "늘봄", "단비", "여울", "너울", "마루", "한울", "나래",
          "보람", "슬기", "푸름", "은솔", "해든", "달빛", "온누리", "샘말", "바람골", "물소리",
          "꽃뫼", "가온", "도담", "모란", "시내", "초롱", "희망", "구름재"]
_LOCATIONS = ["동부 해안", "서부 해안", "남부 해안", "중부 내륙", "북부 산간 지역", "큰 강 하류"]
_POPULATIONS = ["약 8만 명", "약 12만 명", "약 15만 명", "약 23만 명", "약 31만 명", "약 46만 명",
                "약 58만 명", "약 74만 명", "약 96만 명", "약 120만 명"]
_SPECIALTIES = ["사과", "녹차", "인삼", "한우", "굴", "딸기", "감귤", "쌀", "고추", "도자기", "한지", "김"]
# (festival, the season it is held in): a cherry-blossom festival in winter would read as nonsense.
_FESTIVALS = [("벚꽃 축제", "봄"), ("유채꽃 축제", "봄"), ("연등 축제", "봄"), ("음악 축제", "여름"),
              ("모래 축제", "여름"), ("국화 축제", "가을"), ("단풍 축제", "가을"), ("불꽃 축제", "가을"),
              ("빛 축제", "겨울"), ("얼음 축제", "겨울")]
_INDUSTRIES = {
    "전자": ["냉장고", "스마트폰", "텔레비전"], "식품": ["라면", "두유", "김치"],
    "통신": ["인터넷 서비스", "이동 통신 서비스"], "제약": ["감기약", "소화제", "진통제"],
    "건설": ["아파트", "교량"], "출판": ["어린이 그림책", "과학 잡지"], "항공": ["국내선 항공편", "화물 운송"],
    "화학": ["친환경 플라스틱", "페인트"], "자동차": ["전기 자동차", "소형 트럭"], "제과": ["쿠키", "사탕", "케이크"],
}
_STAFF = ["약 350명", "약 800명", "약 1,200명", "약 2,500명", "약 4,000명", "약 7,500명"]
_SURNAMES = ["김", "이", "박", "최", "정", "강", "조", "윤", "장", "임", "한", "오", "서", "신", "권"]
_GIVEN = ["하늘", "서진", "도윤", "지우", "민서", "예준", "하린", "시우", "은채", "태오", "수빈",
          "재희", "나연", "주원", "소율", "건우", "다인", "현서", "유진", "시온"]
_JOBS = ["화가", "소설가", "작곡가", "조각가", "사진작가", "영화감독", "시인", "동화 작가", "만화가", "극작가"]
_TITLE_WORDS = (["푸른", "고요한", "먼", "오래된", "따뜻한", "작은", "하얀", "깊은"],
                ["들판", "바다", "정원", "새벽", "기억", "여름", "골목", "별"])
_N_ENTITIES = 40

# (concept, advantage, disadvantage) for closed-book opinion-free questions.
_PROS_CONS = [
    ("인공지능", "많은 데이터를 빠르게 처리하고 반복 작업을 자동화할 수 있다는 것",
     "학습 데이터에 편향이 있으면 잘못된 판단을 할 수 있다는 것"),
    ("전기 자동차", "배기가스가 없고 연료비가 적게 든다는 것", "충전 시간이 길고 충전소가 아직 부족하다는 것"),
    ("재택근무", "출퇴근 시간을 아낄 수 있다는 것", "동료와 소통하기가 어려울 수 있다는 것"),
    ("대중교통", "교통비가 저렴하고 환경 오염을 줄일 수 있다는 것", "출퇴근 시간에 몹시 붐빈다는 것"),
    ("태양광 발전", "연료가 필요 없고 온실가스를 거의 배출하지 않는다는 것", "날씨와 시간에 따라 발전량이 달라진다는 것"),
    ("온라인 수업", "장소에 상관없이 수업을 들을 수 있다는 것", "집중력을 유지하기 어렵다는 것"),
    ("스마트폰", "언제 어디서나 정보를 찾고 연락할 수 있다는 것", "지나치게 쓰면 눈과 목 건강에 좋지 않다는 것"),
    ("신용카드", "현금 없이 편리하게 결제할 수 있다는 것", "과소비로 이어지기 쉽다는 것"),
    ("클라우드 저장소", "어느 기기에서나 파일을 열 수 있다는 것", "인터넷이 연결되지 않으면 쓰기 어렵다는 것"),
    ("자전거 출퇴근", "운동이 되고 교통비가 들지 않는다는 것", "비나 눈이 오는 날에는 이용하기 어렵다는 것"),
    ("원자력 발전", "적은 연료로 많은 전기를 만들 수 있다는 것", "방사성 폐기물을 처리하기 어렵다는 것"),
]


class Fact(NamedTuple):
    """One answerable fact: questions about it, its short answer, full sentence, context sentence."""

    entity: str
    attribute: str
    questions: tuple[str, ...]
    short: str
    sentence: str
    context: str


def _city_facts(name: str, rng: random.Random) -> list[Fact]:
    loc, pop, spec = rng.choice(_LOCATIONS), rng.choice(_POPULATIONS), rng.choice(_SPECIALTIES)
    (fest, season), year = rng.choice(_FESTIVALS), f"{rng.randint(1949, 1998)}년"
    topic = josa(name, "은/는")
    return [
        Fact(name, "location", (f"{topic} 어디에 있나요?", f"{name}의 위치는?"), loc,
             f"{topic} {loc}에 있습니다.", f"{topic} {loc}에 있는 도시이다."),
        Fact(name, "population", (f"{name}의 인구는?", f"{name}에는 몇 명이 살고 있나요?"), pop,
             f"{name}의 인구는 {pop}입니다.", f"{name}의 인구는 {pop}이다."),
        Fact(name, "specialty", (f"{name}의 특산물은?", f"{name}에서 유명한 특산물은 무엇인가요?"), spec,
             f"{name}의 특산물은 {spec}입니다.", f"{topic} {josa(spec, '이/가')} 특산물로 유명하다."),
        Fact(name, "festival", (f"{name}에서 해마다 열리는 축제는?", f"{name}의 대표 축제는 무엇인가요?"), fest,
             f"{name}에서는 해마다 {josa(fest, '이/가')} 열립니다.",
             f"해마다 {josa(season, '이/가')} 되면 {name}에서 {josa(fest, '이/가')} 열린다."),
        Fact(name, "festival_season", (f"{name}의 {josa(fest, '은/는')} 언제 열리나요?", f"{name}의 {fest} 시기는?"),
             season, f"{name}의 {josa(fest, '은/는')} 해마다 {season}에 열립니다.", ""),
        Fact(name, "promotion", (f"{topic} 언제 시로 승격되었나요?", f"{josa(name, '이/가')} 시가 된 해는?"), year,
             f"{topic} {year}에 시로 승격되었습니다.", f"{topic} {year}에 시로 승격되었다."),
    ]


def _company_facts(name: str, industry: str, city: str, founding: tuple[int, str],
                   rng: random.Random) -> list[Fact]:
    (founded, founder), staff = founding, rng.choice(_STAFF)
    year, item = f"{founded}년", rng.choice(_INDUSTRIES[industry])
    topic = josa(name, "은/는")
    return [
        Fact(name, "founded", (f"{topic} 언제 설립되었나요?", f"{name}의 설립 연도는?"), year,
             f"{topic} {year}에 설립되었습니다.", f"{topic} {year}에 설립된 {industry} 회사이다."),
        Fact(name, "headquarters", (f"{name}의 본사는 어디에 있나요?", f"{name} 본사의 위치는?"), city,
             f"{name}의 본사는 {city}에 있습니다.", f"{name}의 본사는 {city}에 있다."),
        Fact(name, "product", (f"{name}의 주력 제품은?", f"{name}의 대표 상품은 무엇인가요?"), item,
             f"{name}의 주력 제품은 {item}입니다.", f"{name}의 주력 제품은 {item}이다."),
        Fact(name, "staff", (f"{name}의 직원 수는?", f"{name}에는 직원이 몇 명 있나요?"), staff,
             f"{name}의 직원 수는 {staff}입니다.", f"직원 수는 {staff}이다."),
        Fact(name, "founder", (f"{josa(name, '을/를')} 세운 사람은?", f"{name}의 창업자는 누구인가요?"), founder,
             f"{josa(name, '을/를')} 세운 사람은 {founder}입니다.", f"{topic} {josa(founder, '이/가')} 세웠다."),
    ]


def _person_facts(name: str, hometown: str, rng: random.Random) -> list[Fact]:
    job, year = rng.choice(_JOBS), f"{rng.randint(1940, 1995)}년"
    title = f"《{rng.choice(_TITLE_WORDS[0])} {rng.choice(_TITLE_WORDS[1])}》"
    topic = josa(name, "은/는")
    return [
        Fact(name, "job", (f"{name}의 직업은?", f"{topic} 무슨 일을 하나요?"), job,
             f"{topic} {job}입니다.", f"{topic} {hometown} 출신의 {job}이다."),
        Fact(name, "born", (f"{topic} 언제 태어났나요?", f"{name}의 출생 연도는?"), year,
             f"{topic} {year}에 태어났습니다.", f"{topic} {year}에 태어났다."),
        Fact(name, "hometown", (f"{name}의 고향은?", f"{topic} 어디 출신인가요?"), hometown,
             f"{name}의 고향은 {hometown}입니다.", ""),
        Fact(name, "work", (f"{name}의 대표작은?", f"{name}의 대표 작품은 무엇인가요?"), title,
             f"{name}의 대표작은 {title}입니다.", f"{name}의 대표작은 {title}이다."),
    ]


def build_fact_table(rng: random.Random) -> list[list[Fact]]:
    """Facts grouped by entity; the first fact's context sentence introduces the entity."""
    cities = [f"{root}시" for root in rng.sample(_ROOTS, _N_ENTITIES)]
    people = rng.sample([s + g for s in _SURNAMES for g in _GIVEN], _N_ENTITIES)
    pairs = rng.sample([(r, i) for r in _ROOTS for i in _INDUSTRIES], _N_ENTITIES)
    table = [_city_facts(city, rng) for city in cities]
    table += [_person_facts(person, rng.choice(cities), rng) for person in people]
    births = {facts[1].entity: int(facts[1].short[:-1]) for facts in table[_N_ENTITIES:]}
    for root, industry in pairs:
        table.append(_company_facts(root + industry, industry, rng.choice(cities),
                                    _founding(births, rng), rng))
    return table


def _founding(births: dict[str, int], rng: random.Random) -> tuple[int, str]:
    """A founding year and a founder who was at least 25 years old by then."""
    year = rng.randint(1975, 2020)
    eligible = [person for person, born in births.items() if born + 25 <= year]
    if not eligible:
        eligible = [min(births, key=births.__getitem__)]
        year = max(year, births[eligible[0]] + 25)
    return year, rng.choice(eligible)


def _context(facts: list[Fact], variant: int) -> str:
    """Entity paragraph; variant 1 lists the facts after the introduction in reverse order."""
    sentences = [fact.context for fact in facts if fact.context]
    body = sentences[1:] if variant == 0 else sentences[:0:-1]
    return " ".join([sentences[0]] + body)


def _fact_rows(facts: list[Fact]) -> list[Candidate]:
    rows = []
    contexts = [_context(facts, variant) for variant in (0, 1)]
    for fact in facts:
        bare = fact.short.strip("《》")
        extras = (bare,) if bare != fact.short else ()
        for q_index, question in enumerate(fact.questions):
            key = ("fact", fact.entity, fact.attribute, str(q_index))
            rows.append(Candidate(key + ("closed",), f"질문: {question}", fact.sentence,
                                  (fact.sentence, fact.short) + extras))
            for variant, context in enumerate(contexts):
                rows.append(Candidate(key + (f"context{variant}",), f"질문: {question} 문맥: {context}",
                                      fact.short, (fact.short,) + extras + (fact.sentence,)))
    return rows


def _pros_cons_rows() -> list[Candidate]:
    rows = []
    for concept, pro, con in _PROS_CONS:
        for label, text in (("장점", pro), ("단점", con)):
            sentence = f"{concept}의 {label}은 {text}입니다."
            for q_index, question in enumerate((f"{concept}의 {label}은?", f"{concept}의 {label}은 무엇인가요?")):
                rows.append(Candidate(("opinion", concept, label, str(q_index)), f"질문: {question}",
                                      sentence, (sentence, text)))
    return rows


def qa_families(rng: random.Random) -> list[list[Candidate]]:
    """Candidate rows per entity kind (cities, people, companies) plus pros/cons questions."""
    table = build_fact_table(rng)
    per_kind = [table[k * _N_ENTITIES:(k + 1) * _N_ENTITIES] for k in range(3)]
    families = [[row for facts in kind for row in _fact_rows(facts)] for kind in per_kind]
    return families + [_pros_cons_rows()]
