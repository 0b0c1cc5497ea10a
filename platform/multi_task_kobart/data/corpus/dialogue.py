"""dialogue_summarization rows: two-speaker dialogues ("A: ... B: ...") and one-sentence summaries.

Seven scenario families (meeting times, rescheduling, appointments, restaurant bookings,
deliveries, weather-changed plans, shopping). Every fact the summary states comes from a slot
that appears in the dialogue, so a summary can always be derived from its dialogue.
"""

from __future__ import annotations

from itertools import product

from multi_task_kobart.data.corpus.korean import Candidate, josa

_EVENTS = ["회의", "팀 회의", "면접", "세미나", "워크숍", "발표 연습", "주간 회의",
           "프로젝트 회의", "신입 교육", "고객 미팅"]
_DAYS = ["오늘", "내일", "모레", "이번 주 목요일", "이번 주 금요일", "다음 주 월요일", "다음 주 수요일"]
_TIMES = ["오전 9시", "오전 10시", "오전 11시 반", "오후 1시", "오후 2시", "오후 3시",
          "오후 4시 반", "오후 5시"]
_ROOMS = ["3층 회의실", "대회의실", "본관 201호", "2층 세미나실", "별관 강당"]
_CLINICS = ["치과", "안과", "피부과", "미용실", "한의원", "자동차 정비소"]
_NAMES = ["김민준", "이서연", "박지호", "최수아", "정우진", "강하은", "조현우", "윤지민"]
_DINNER_TIMES = ["6시", "6시 반", "7시", "7시 반", "8시"]
_PARTY = ["두 명", "세 명", "네 명", "다섯 명", "여섯 명"]
_SEATS = ["", "창가 자리", "룸", "야외 자리"]
_ITEMS = ["노트북", "책상", "운동화", "책", "휴대폰 케이스", "커피 머신", "의자", "모니터",
          "이어폰", "가방"]
_ARRIVALS = ["오늘 오후", "내일 오전", "내일 오후", "모레", "이번 주 금요일", "다음 주 월요일", "사흘 뒤"]
_DROP_SPOTS = ["문 앞", "경비실", "택배 보관함", "현관 옆"]
# (how A proposes it, the activity as a noun for the summary)
_OUTINGS = [("등산 갈까?", "등산"), ("캠핑 갈까?", "캠핑"), ("소풍 갈까?", "소풍"),
            ("낚시하러 갈까?", "낚시"), ("자전거 타러 갈까?", "자전거 타기"), ("바다 보러 갈까?", "바다 여행")]
# (how B reports the forecast, the forecast as a noun)
_WEATHER = [("비가 온대", "비 소식"), ("눈이 많이 온대", "폭설 소식"), ("태풍이 온대", "태풍 소식"),
            ("엄청 덥대", "폭염 소식"), ("미세먼지가 심하대", "미세먼지 소식")]
_OUTING_DAYS = ["토요일", "일요일", "내일", "이번 주말"]
# (what A then suggests, how the summary states the decision given the activity noun)
_DECISIONS = [
    ("다음 주말로 미루자.", "{act} 다음 주말로 미루기로 했습니다"),
    ("그냥 집에서 영화 보자.", "{noun} 대신 집에서 영화를 보기로 했습니다"),
    ("실내 수영장에 가자.", "{noun} 대신 실내 수영장에 가기로 했습니다"),
]
_GOODS = ["티셔츠", "운동화", "우산", "텀블러", "가방", "모자", "이어폰", "지갑"]
_PRICES = ["9,900원", "12,000원", "15,000원", "25,000원", "39,000원", "48,000원"]


def _meetings() -> list[Candidate]:
    rows = []
    for event, day, time in product(_EVENTS, _DAYS, _TIMES):
        topic = josa(f"{day} {event}", "은/는")
        rows.append(Candidate(("meeting", event, day, time, "ask"),
                              f"A: {day} {event} 몇 시예요? B: {josa(time, '이에요/예요')}.",
                              f"{topic} {time}입니다."))
        rows.append(Candidate(("meeting", event, day, time, "start"),
                              f"A: {day} {event} 몇 시에 시작해요? B: {time}에 시작해요.",
                              f"{topic} {time}에 시작합니다."))
        for room in _ROOMS:
            dialogue = (f"A: {day} {event} 몇 시로 잡혔어요? B: {josa(time, '으로/로')} 잡혔어요. "
                        f"A: 장소는 어디예요? B: {josa(room, '이에요/예요')}.")
            rows.append(Candidate(("meeting", event, day, time, room), dialogue,
                                  f"{topic} {time}에 {room}에서 열립니다."))
    return rows


def _reschedules() -> list[Candidate]:
    rows = []
    for event, day, old, new in product(_EVENTS, _DAYS[:4], _TIMES, _TIMES):
        if old == new:
            continue
        dialogue = (f"A: {day} {event} {old}에 하는 거 맞죠? B: 아니요, {josa(new, '으로/로')} "
                    "바뀌었어요. A: 알려 줘서 고마워요.")
        summary = f"{day} {event} 시간이 {old}에서 {josa(new, '으로/로')} 변경되었습니다."
        rows.append(Candidate(("reschedule", event, day, old, new), dialogue, summary))
    return rows


def _appointments() -> list[Candidate]:
    rows = []
    for clinic, day, time in product(_CLINICS, _DAYS, _TIMES):
        dialogue = (f"A: {day} {clinic} 예약할 수 있을까요? B: {time}에 자리가 있습니다. "
                    "A: 그럼 그 시간으로 해 주세요.")
        rows.append(Candidate(("appointment", clinic, day, time), dialogue,
                              f"A는 {day} {time}에 {clinic} 예약을 했습니다."))
        for other in _TIMES[::3]:
            if other == time:
                continue
            dialogue = (f"A: {day} {time}에 {clinic} 예약 가능한가요? B: 죄송하지만 그 시간은 "
                        f"마감되었어요. {josa(other, '은/는')} 어떠세요? A: 좋아요, 그때로 할게요.")
            summary = (f"A는 원하던 {josa(time, '이/가')} 마감되어 {day} {josa(other, '으로/로')} "
                       f"{clinic} 예약을 잡았습니다.")
            rows.append(Candidate(("appointment", clinic, day, time, other), dialogue, summary))
    return rows


def _restaurants() -> list[Candidate]:
    rows = []
    for name, day, time, party, seat in product(_NAMES, _DAYS[1:6], _DINNER_TIMES, _PARTY, _SEATS):
        dialogue = (f"A: {day} 저녁 {time}에 {party} 예약할 수 있나요? B: 네, 가능합니다. "
                    f"성함이 어떻게 되세요? A: {name}입니다.")
        if seat:
            dialogue += f" B: {josa(seat, '으로/로')} 준비해 드릴까요? A: 네, 좋아요."
            summary = f"{name} 씨가 {day} 저녁 {time}에 {josa(seat, '으로/로')} {party} 예약을 했습니다."
        else:
            summary = f"{name} 씨가 {day} 저녁 {time}에 {party} 식사를 예약했습니다."
        rows.append(Candidate(("restaurant", name, day, time, party, seat), dialogue, summary))
    return rows


def _deliveries() -> list[Candidate]:
    rows = []
    for item, when in product(_ITEMS, _ARRIVALS):
        topic = josa(f"주문한 {item}", "은/는")
        rows.append(Candidate(("delivery", item, when, "ask"),
                              f"A: 제가 주문한 {item} 언제 도착하나요? B: {when}에 도착할 예정입니다.",
                              f"{topic} {when}에 도착할 예정입니다."))
        rows.append(Candidate(("delivery", item, when, "late"),
                              f"A: 주문한 {josa(item, '이/가')} 아직 안 왔어요. B: 죄송합니다. 배송이 "
                              f"지연되어 {when}에 도착합니다. A: 알겠습니다.",
                              f"배송 지연으로 {topic} {when}에 도착할 예정입니다."))
    for item, spot in product(_ITEMS, _DROP_SPOTS):
        dialogue = (f"A: 안녕하세요, {item} 배송 기사입니다. 지금 댁에 안 계시면 {spot}에 두고 "
                    f"갈까요? B: 네, {spot}에 놓아 주세요.")
        summary = f"배송 기사는 {josa(item, '을/를')} {spot}에 두고 가기로 했습니다."
        rows.append(Candidate(("delivery", item, spot, "drop"), dialogue, summary))
    return rows


def _weather_plans() -> list[Candidate]:
    rows = []
    for (ask, noun), (forecast, news), day, (suggestion, decision) in product(
        _OUTINGS, _WEATHER, _OUTING_DAYS, _DECISIONS
    ):
        dialogue = f"A: {day}에 {ask} B: {day}에 {forecast}. A: 그럼 {suggestion}"
        result = decision.format(act=josa(noun, "을/를"), noun=noun)
        summary = f"두 사람은 {day}에 {josa(news, '이/가')} 있어서 {result}."
        rows.append(Candidate(("weather", noun, news, day, suggestion), dialogue, summary))
    return rows


def _shopping() -> list[Candidate]:
    rows = []
    for item, price in product(_GOODS, _PRICES):
        ask = f"A: 이 {item} 얼마예요? B: {josa(price, '이에요/예요')}. A: 카드 결제 되나요?"
        rows.append(Candidate(("shop", item, price, "card"), f"{ask} B: 네, 카드 결제 가능합니다.",
                              f"{item}의 가격은 {josa(price, '이고/고')} 카드 결제가 가능합니다."))
        rows.append(Candidate(("shop", item, price, "cash"), f"{ask} B: 죄송하지만 현금만 받아요.",
                              f"{item}의 가격은 {josa(price, '이고/고')} 현금 결제만 가능합니다."))
    for item, (i, full), sale in product(_GOODS, enumerate(_PRICES), _PRICES):
        if _PRICES.index(sale) >= i:
            continue
        dialogue = (f"A: 이 {item} 얼마예요? B: 원래 {full}인데 오늘은 할인해서 "
                    f"{josa(sale, '이에요/예요')}. A: 그럼 하나 주세요.")
        summary = f"A는 {full}짜리 {josa(item, '을/를')} 할인된 가격인 {sale}에 샀습니다."
        rows.append(Candidate(("shop", item, full, sale), dialogue, summary))
    return rows


def dialogue_families() -> list[list[Candidate]]:
    """All candidate rows, one list per scenario family (sampled evenly by the caller)."""
    return [_meetings(), _reschedules(), _appointments(), _restaurants(), _deliveries(),
            _weather_plans(), _shopping()]
