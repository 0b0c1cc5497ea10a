"""role_generation rows: "[role] question" -> a reply in that role's voice.

Seven roles, each with its own register: 선생님 explains in 합쇼체, 친구 answers in 반말,
의사/상담사/고객센터/여행 가이드/요리사 answer politely with role-specific content. Replies are a
function of the input's slots only (symptom, duration, feeling, product, ...), never drawn at
random, so one input always has one target.
"""

from __future__ import annotations

from itertools import product

from multi_task_kobart.data.corpus.korean import Candidate, Verb, josa, prospective, suggest

_CONCEPTS = [
    ("파이썬", "배우기 쉬운 프로그래밍 언어"),
    ("광합성", "식물이 빛 에너지를 이용해 이산화 탄소와 물로 양분을 만드는 과정"),
    ("중력", "질량을 가진 물체끼리 서로 끌어당기는 힘"),
    ("민주주의", "국민이 나라의 주인으로서 권력을 가지고 행사하는 정치 제도"),
    ("인공지능", "사람의 학습, 추론, 판단 능력을 컴퓨터로 구현한 기술"),
    ("미분", "함수의 순간 변화율을 구하는 방법"),
    ("소수", "1과 자기 자신으로만 나누어떨어지는 1보다 큰 자연수"),
    ("명사", "사람이나 사물, 장소의 이름을 나타내는 품사"),
    ("동사", "사람이나 사물의 움직임을 나타내는 품사"),
    ("세포", "생물의 몸을 이루는 가장 작은 기본 단위"),
    ("생태계", "일정한 지역의 생물과 환경이 서로 영향을 주고받는 체계"),
    ("온실 효과", "대기 중의 기체가 지구의 열을 가두어 기온을 높이는 현상"),
    ("알고리즘", "문제를 해결하는 절차를 순서대로 정리한 것"),
    ("데이터베이스", "여러 사람이 함께 쓸 수 있도록 데이터를 체계적으로 모아 둔 것"),
    ("반도체", "전기가 통하는 정도가 도체와 부도체의 중간인 물질"),
    ("관성", "물체가 원래의 운동 상태를 계속 유지하려는 성질"),
    ("마찰력", "맞닿은 두 물체 사이에서 운동을 방해하는 힘"),
    ("증발", "액체 표면에서 액체가 기체로 변하는 현상"),
    ("지진", "땅속에 쌓인 힘이 풀리면서 땅이 흔들리는 현상"),
    ("화산", "땅속의 마그마가 땅 위로 분출하여 생긴 지형"),
    ("면역", "우리 몸이 병원체로부터 스스로를 지키는 작용"),
    ("유전자", "부모의 특징을 자식에게 전하는 유전 정보의 단위"),
    ("인플레이션", "물가가 전반적으로 계속 오르는 현상"),
    ("헌법", "나라를 다스리는 기본 원칙을 정한 최고의 법"),
    ("삼권 분립", "국가 권력을 입법, 행정, 사법으로 나누어 서로 견제하게 하는 제도"),
    ("위도", "적도를 기준으로 남북으로 얼마나 떨어져 있는지 나타내는 좌표"),
    ("경도", "본초 자오선을 기준으로 동서로 얼마나 떨어져 있는지 나타내는 좌표"),
    ("확률", "어떤 일이 일어날 가능성을 수로 나타낸 것"),
    ("평균", "여러 수의 합을 그 개수로 나눈 값"),
    ("비유법", "어떤 대상을 다른 대상에 빗대어 표현하는 방법"),
    ("에너지", "일을 할 수 있는 능력"),
    ("기후 변화", "오랜 기간에 걸쳐 지구의 평균 기후가 변하는 현상"),
    ("클라우드 컴퓨팅", "인터넷을 통해 서버와 저장 공간 같은 컴퓨터 자원을 빌려 쓰는 방식"),
    ("머신러닝", "컴퓨터가 데이터에서 규칙을 스스로 학습하는 인공지능의 한 분야"),
    ("산성비", "대기 오염 물질이 섞여 산성을 띠는 비"),
    ("원주율", "원의 둘레를 지름으로 나눈 값으로, 약 3.14"),
]
_TEACHER_OPENERS = ["", "선생님, ", "질문이 있어요. ", "궁금한 게 있는데요, "]
_SUBJECT_TIPS = [
    ("수학", "개념을 먼저 이해한 뒤 비슷한 문제를 여러 번 풀어 보는 것이 좋습니다"),
    ("영어", "매일 조금씩 소리 내어 읽고 단어를 문장과 함께 외우는 것이 좋습니다"),
    ("국어", "다양한 글을 읽고 글쓴이의 생각을 요약해 보는 연습이 도움이 됩니다"),
    ("과학", "교과서의 실험 과정을 직접 그려 보며 원리를 이해하는 것이 좋습니다"),
    ("역사", "사건을 시대 순서대로 정리하고 원인과 결과를 연결해 보는 것이 좋습니다"),
    ("코딩", "작은 프로그램을 직접 만들어 보면서 오류를 고쳐 보는 것이 가장 좋습니다"),
]
_SUBJECT_ASKS = ["{s} 공부는 어떻게 해야 하나요?", "{s} 점수가 잘 안 올라요.", "{s_i} 너무 어려워요."]

_FRIEND_OPENERS = ["", "야, ", "있잖아, "]
# (time as asked, time as a topic in the reply)
_FRIEND_TIMES = [("주말에", "주말에는"), ("오늘 저녁에", "오늘 저녁에는"), ("내일", "내일은"),
                 ("토요일에", "토요일에는"), ("일요일에", "일요일에는"), ("이번 연휴에", "이번 연휴에는"),
                 ("방학 때", "방학 때는")]
_HANGOUTS = [("영화", Verb("보")), ("밥", Verb("먹")), ("카페", Verb("가")), ("", Verb("운동하")),
             ("노래방", Verb("가")), ("", Verb("게임하")), ("", Verb("산책하")), ("떡볶이", Verb("먹")),
             ("", Verb("공부하")), ("자전거", Verb("타"))]
_INVITE_TIMES = ["주말에", "오늘 저녁에", "내일", "토요일에", "이따가", "퇴근하고", "점심에"]
_FEELINGS = [
    ("피곤해", "많이 피곤하구나. 오늘은 일찍 푹 자."),
    ("배고파", "나도 배고파. 뭐 먹으러 갈까?"),
    ("심심해", "그럼 같이 산책이라도 할래?"),
    ("우울해", "무슨 일 있었어? 내가 얘기 들어 줄게."),
    ("긴장돼", "너무 걱정하지 마. 넌 잘할 수 있어."),
    ("행복해", "좋은 일 있었구나! 나도 기분 좋다."),
    ("화가 나", "무슨 일인데? 천천히 얘기해 봐."),
    ("외로워", "언제든 연락해. 내가 옆에 있잖아."),
    ("졸려", "잠깐 눈 좀 붙이는 게 어때?"),
    ("스트레스 받아", "요즘 힘들었구나. 잠깐 바람 좀 쐬러 나가자."),
    ("머리 아파", "약 먹고 좀 쉬어. 너무 무리하지 마."),
    ("설레", "무슨 좋은 일 있어? 얘기해 줘!"),
    ("불안해", "괜찮아, 다 잘될 거야. 하나씩 같이 해 보자."),
    ("아쉬워", "다음에는 꼭 잘될 거야. 너무 마음 쓰지 마."),
]
_FEELING_ADVERBS = ["", "너무 ", "진짜 ", "좀 ", "오늘 ", "요즘 "]

_SYMPTOMS = [
    ("두통", "충분히 쉬시고 물을 자주 드세요."),
    ("기침", "따뜻한 물을 자주 드시고 실내가 건조하지 않게 해 주세요."),
    ("콧물", "실내 습도를 적당히 유지하시고 푹 쉬세요."),
    ("열", "미지근한 물로 몸을 닦아 주시고 해열제를 드셔 보세요."),
    ("복통", "자극적인 음식은 피하시고 따뜻한 물을 조금씩 드세요."),
    ("소화 불량", "식사는 천천히 조금씩 하시고 기름진 음식은 피하세요."),
    ("허리 통증", "오래 앉아 계시지 마시고 가벼운 스트레칭을 해 보세요."),
    ("불면증", "잠들기 전에는 휴대폰 사용을 줄이시고 일정한 시간에 주무세요."),
    ("어지럼증", "갑자기 일어나지 마시고 물을 충분히 드세요."),
    ("목 통증", "따뜻한 차를 드시고 말을 줄여 목을 쉬게 해 주세요."),
    ("눈의 피로", "화면을 볼 때 자주 쉬시고 인공눈물을 사용해 보세요."),
    ("근육통", "무리한 운동은 잠시 쉬시고 따뜻하게 찜질해 주세요."),
    ("가려움증", "피부를 긁지 마시고 보습제를 충분히 발라 주세요."),
    ("설사", "수분을 충분히 드시고 기름진 음식은 피하세요."),
    ("무릎 통증", "계단 오르기를 줄이시고 무릎을 따뜻하게 해 주세요."),
    ("어깨 결림", "자세를 자주 바꾸시고 어깨 스트레칭을 해 보세요."),
    ("속쓰림", "빈속에 커피를 드시지 마시고 식사를 규칙적으로 하세요."),
]
# (duration, whether it has lasted long enough that a visit is advised outright)
_DURATIONS = [("어제부터", False), ("아침부터", False), ("이틀째", False), ("며칠째", True), ("일주일째", True)]
_PATIENT_ASKS = ["{d} {s_i} 있어요. 어떻게 해야 하나요?", "{d} {s} 때문에 힘들어요.",
                 "{s_i} {d} 계속되는데 괜찮을까요?"]
_POLITE_OPENERS = ["", "안녕하세요. ", "저기요, "]

_SITUATIONS = ["시험", "취업 준비", "이사", "회사 일", "인간관계", "새 학교 생활", "육아", "발표",
               "이별", "진로 고민", "가족 문제", "돈 문제"]
# (what the client says, how the counsellor reflects it, a suggestion)
_EMOTIONS = [
    ("불안해요", "불안한 마음이 드셨군요", "지금 할 수 있는 일을 하나씩 적어 보시면 마음이 한결 가벼워집니다."),
    ("스트레스를 많이 받아요", "스트레스가 많이 쌓이셨군요", "잠깐이라도 좋아하는 일을 하며 마음을 쉬게 해 주세요."),
    ("잠을 못 자요", "잠을 설칠 만큼 마음이 무거우셨군요", "잠들기 전에 천천히 호흡하는 연습을 해 보시길 권해 드립니다."),
    ("우울해요", "마음이 많이 가라앉으셨군요", "믿을 수 있는 사람에게 지금의 마음을 이야기해 보시면 좋겠습니다."),
    ("자신감이 없어요", "자신감이 많이 떨어지셨군요", "작은 목표부터 이루어 가며 스스로를 칭찬해 주세요."),
    ("아무것도 하기 싫어요", "많이 지치셨군요", "오늘은 무리하지 마시고 충분히 쉬는 시간을 가져 보세요."),
]
_CLIENT_ASKS = ["{s} 때문에 {e}.", "요즘 {s} 때문에 {e}.", "{s} 때문에 {e}. 어떻게 하면 좋을까요?"]

_PRODUCTS = ["노트북", "휴대폰", "냉장고", "세탁기", "무선 이어폰", "청소기", "전자레인지", "태블릿",
             "모니터", "공기청정기"]
# (customer's issue, reply with {p}/{p_i}/{p_ui} for the product, whether to apologise first)
_ISSUES = [
    ("환불하고 싶어요", "{p} 환불은 구매일로부터 7일 이내에 마이페이지에서 신청하실 수 있습니다.", False),
    ("교환하고 싶어요", "교환 신청을 해 주시면 기존 {p_ul} 회수한 뒤 새 제품을 보내 드립니다.", False),
    ("배송이 너무 늦어요", "{p} 배송 현황을 확인한 뒤 문자로 안내해 드리겠습니다.", True),
    ("고장이 났어요", "보증 기간 안이라면 {p_ul} 무상으로 수리해 드립니다. 가까운 서비스 센터를 안내해 드릴까요?", True),
    ("전원이 안 켜져요", "먼저 {p}의 전원 연결 상태를 확인해 주시고, 그래도 켜지지 않으면 서비스 센터에서 점검을 받아 보세요.", True),
    ("구성품이 빠져 있어요", "빠진 {p} 구성품은 확인 후 바로 보내 드리겠습니다.", True),
    ("주문을 취소하고 싶어요", "{p_i} 아직 발송 전이라면 마이페이지에서 바로 주문을 취소하실 수 있습니다.", False),
    ("영수증이 필요해요", "{p} 구매 영수증은 마이페이지의 주문 내역에서 출력하실 수 있습니다.", False),
]
_CUSTOMER_ASKS = ["{p} {i}.", "주문한 {p} {i}.", "안녕하세요. {p} {i}.", "저기요, {p} {i}."]

# (city, must-see place, local food, best season): well-known, uncontroversial travel facts.
_CITIES = [
    ("부산", "해운대 해수욕장", "돼지국밥", "여름"), ("경주", "불국사", "황남빵", "봄"),
    ("전주", "한옥마을", "비빔밥", "가을"), ("제주", "성산 일출봉", "흑돼지 구이", "봄"),
    ("강릉", "경포대", "초당 순두부", "여름"), ("여수", "오동도", "갓김치", "봄"),
    ("속초", "설악산", "오징어순대", "가을"), ("안동", "하회마을", "안동찜닭", "가을"),
    ("춘천", "남이섬", "닭갈비", "가을"), ("통영", "동피랑 벽화마을", "충무김밥", "봄"),
]
_GUIDE_OPENERS = ["", "안녕하세요. ", "여행이 처음인데요, "]

_DISHES = [
    ("김치찌개", "잘 익은 김치를 먼저 볶은 뒤 끓이면 더 깊은 맛이 납니다", "김치, 돼지고기, 두부, 대파"),
    ("된장찌개", "멸치 육수를 먼저 내고 된장을 풀면 맛이 깊어집니다", "된장, 두부, 애호박, 양파"),
    ("계란말이", "약한 불에서 천천히 말아야 부드럽게 완성됩니다", "달걀, 소금, 대파, 당근"),
    ("불고기", "고기를 양념에 30분 이상 재워 두면 더 부드럽습니다", "소고기, 간장, 설탕, 배, 마늘"),
    ("떡볶이", "고추장과 설탕을 먼저 물에 풀고 떡을 넣어야 양념이 잘 배어듭니다", "떡, 어묵, 고추장, 대파"),
    ("잡채", "당면과 채소를 따로 볶은 뒤 마지막에 섞어야 식감이 좋습니다", "당면, 시금치, 당근, 소고기, 간장"),
    ("김밥", "밥에 참기름과 소금으로 미리 간을 해 두면 훨씬 맛있습니다", "김, 밥, 단무지, 시금치, 달걀"),
    ("미역국", "불린 미역을 참기름에 충분히 볶은 뒤 끓이면 국물이 진해집니다", "미역, 소고기, 국간장, 참기름"),
    ("볶음밥", "전날 지은 식은 밥을 쓰면 고슬고슬하게 볶아집니다", "밥, 달걀, 대파, 햄"),
    ("감자전", "간 감자의 물기를 적당히 빼고 부치면 바삭해집니다", "감자, 소금, 식용유"),
    ("닭볶음탕", "닭을 한 번 데쳐서 기름을 빼면 국물이 깔끔해집니다", "닭고기, 감자, 당근, 고추장"),
    ("순두부찌개", "고춧가루를 기름에 먼저 볶아 고추기름을 내면 맛이 살아납니다", "순두부, 바지락, 고춧가루, 달걀"),
]
_CHEF_ASKS = {
    "tip": ["{d} 맛있게 만드는 법 알려 주세요.", "{d} 잘 만드는 비결이 뭐예요?"],
    "ingredients": ["{d}에는 어떤 재료가 필요해요?", "{d} 만들 때 뭐가 필요해요?"],
}


def _row(key: tuple[str, ...], role: str, question: str, reply: str) -> Candidate:
    return Candidate(("role", role) + key, f"[{role}] {question}", reply)


def _teacher() -> list[Candidate]:
    rows = []
    asks = ["{c_ran}?", "{c_i} 뭐예요?", "{c}에 대해 설명해 주세요.", "{c_i} 무엇인가요?"]
    for (concept, definition), (a_index, ask), opener in product(
        _CONCEPTS, enumerate(asks), _TEACHER_OPENERS
    ):
        forms = {"c": concept, "c_i": josa(concept, "이/가"), "c_ran": josa(concept, "이란/란")}
        question = opener + ask.format(**forms)
        reply = f"{josa(concept, '은/는')} {definition}입니다."
        rows.append(_row((concept, str(a_index), opener), "선생님", question, reply))
    for (subject, tip), (a_index, ask), opener in product(
        _SUBJECT_TIPS, enumerate(_SUBJECT_ASKS), _TEACHER_OPENERS
    ):
        question = opener + ask.format(s=subject, s_i=josa(subject, "이/가"))
        reply = f"{subject} 공부는 {tip}. 조금씩이라도 매일 꾸준히 하는 것이 중요합니다."
        rows.append(_row((subject, "study", str(a_index), opener), "선생님", question, reply))
    return rows


def _friend() -> list[Candidate]:
    rows = []
    for (asked, topic), opener in product(_FRIEND_TIMES, _FRIEND_OPENERS):
        rows.append(_row(("plan", asked, opener), "친구", f"{opener}{asked} 뭐해?", "특별한 계획은 없어. 너는?"))
        rows.append(_row(("plan-will", asked, opener), "친구", f"{opener}{asked} 뭐 할 거야?",
                         f"{topic} 그냥 집에서 쉬려고. 너는?"))
        rows.append(_row(("free", asked, opener), "친구", f"{opener}{asked} 시간 있어?",
                         f"응, {topic} 시간 괜찮아. 왜?"))
    for (obj, verb), time, opener in product(_HANGOUTS, _INVITE_TIMES, _FRIEND_OPENERS):
        thing = f"{obj} " if obj else ""
        question = f"{opener}{time} 같이 {thing}{prospective(verb)}래?"
        rows.append(_row(("invite", obj + verb.stem, time, opener), "친구", question,
                         f"좋아! {time} 같이 {thing}{suggest(verb)}."))
    for (feeling, reply), adverb, opener in product(_FEELINGS, _FEELING_ADVERBS, _FRIEND_OPENERS):
        question = f"{opener}나 {adverb}{feeling}."
        rows.append(_row(("feel", feeling, adverb, opener), "친구", question, reply))
    return rows


def _doctor() -> list[Candidate]:
    rows = []
    for (symptom, advice), (duration, long), (a_index, ask), opener in product(
        _SYMPTOMS, _DURATIONS, enumerate(_PATIENT_ASKS), _POLITE_OPENERS
    ):
        question = opener + ask.format(d=duration, s=symptom, s_i=josa(symptom, "이/가"))
        closing = ("증상이 오래 이어지고 있으니 병원에서 진료를 받아 보시길 권합니다." if long
                   else "증상이 나아지지 않으면 가까운 병원에서 진료를 받아 보세요.")
        reply = f"{duration} {josa(symptom, '이/가')} 계속되셨군요. {advice} {closing}"
        rows.append(_row((symptom, duration, str(a_index), opener), "의사", question, reply))
    return rows


def _counsellor() -> list[Candidate]:
    rows = []
    for situation, (feeling, reflection, advice), (a_index, ask), opener in product(
        _SITUATIONS, _EMOTIONS, enumerate(_CLIENT_ASKS), _POLITE_OPENERS
    ):
        question = opener + ask.format(s=situation, e=feeling)
        reply = f"{situation} 때문에 {reflection}. {advice}"
        rows.append(_row((situation, feeling, str(a_index), opener), "상담사", question, reply))
    return rows


def _customer_service() -> list[Candidate]:
    rows = []
    for prod, (issue, answer, sorry), (a_index, ask) in product(
        _PRODUCTS, _ISSUES, enumerate(_CUSTOMER_ASKS)
    ):
        first = "불편을 드려 죄송합니다." if sorry else "문의해 주셔서 감사합니다."
        body = answer.format(p=prod, p_i=josa(prod, "이/가"), p_ul=josa(prod, "을/를"))
        question = ask.format(p=prod, i=issue)
        rows.append(_row((prod, issue, str(a_index)), "고객센터", question, f"{first} {body}"))
    return rows


def _guide() -> list[Candidate]:
    rows = []
    for (city, spot, food, season), opener in product(_CITIES, _GUIDE_OPENERS):
        city_topic = josa(city, "은/는")
        asks = {
            "spot": ([f"{city}에서 꼭 가 봐야 할 곳은 어디예요?", f"{city}에 가면 어디를 구경해야 해요?"],
                     f"{city}에 가시면 {spot}에 꼭 들러 보세요. 많은 여행객이 찾는 대표 명소입니다."),
            "food": ([f"{city}에 가면 뭘 먹어야 해요?", f"{city}의 대표 음식은 뭐예요?"],
                     f"{city}에서는 {josa(food, '을/를')} 꼭 드셔 보세요. "
                     f"현지에서 맛보는 {josa(food, '은/는')} 특별합니다."),
            "season": ([f"{city_topic} 언제 가는 게 좋아요?", f"{city} 여행은 어느 계절이 좋아요?"],
                       f"{city_topic} {season}에 가시면 가장 좋습니다. "
                       f"그때 {city}의 매력을 제대로 느끼실 수 있습니다."),
        }
        for intent, (questions, reply) in asks.items():
            for q_index, question in enumerate(questions):
                key = (city, intent, str(q_index), opener)
                rows.append(_row(key, "여행 가이드", opener + question, reply))
    return rows


def _chef() -> list[Candidate]:
    rows = []
    for (dish, tip, ingredients), opener in product(_DISHES, _POLITE_OPENERS):
        replies = {"tip": f"{josa(dish, '은/는')} {tip}.",
                   "ingredients": f"{dish}에는 {josa(ingredients, '이/가')} 필요합니다."}
        for intent, asks in _CHEF_ASKS.items():
            for a_index, ask in enumerate(asks):
                rows.append(_row((dish, intent, str(a_index), opener), "요리사",
                                 opener + ask.format(d=dish), replies[intent]))
    return rows


def role_families() -> list[list[Candidate]]:
    """All candidate rows, one list per role (sampled evenly by the caller)."""
    return [_teacher(), _friend(), _doctor(), _counsellor(), _customer_service(), _guide(), _chef()]
