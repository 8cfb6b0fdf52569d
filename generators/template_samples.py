"""Sample campaign texts for the ``global-launch`` template, one real translation per locale (tests, benchmark, demo).

The line is "Our new collection is here / Designed for every city and every season. / Shop now". ``UNCOVERED``
holds a translation in a script no packaged font covers (Thai), which the compositor refuses naming the slot.
:func:`cycle` repeats the distinct translations under private-use locale tags to make a batch of any size: a
100-locale batch made that way has the texts of :data:`SAMPLES` repeated, not 100 different translations.
"""

from __future__ import annotations

Fields = dict[str, str]


def _f(headline: str, subline: str, cta: str) -> Fields:
    return {"headline": headline, "subline": subline, "cta": cta}


SAMPLES: dict[str, Fields] = {
    "en": _f("Our new collection is here", "Designed for every city and every season.", "Shop now"),
    "de": _f("Unsere neue Kollektion ist da", "Gemacht für jede Stadt und jede Jahreszeit.", "Jetzt einkaufen"),
    "fr": _f("Notre nouvelle collection est arrivée", "Conçue pour chaque ville et chaque saison.",
             "Acheter maintenant"),
    "es": _f("Nuestra nueva colección ya está aquí", "Diseñada para cada ciudad y cada estación.", "Comprar ahora"),
    "it": _f("La nostra nuova collezione è arrivata", "Pensata per ogni città e ogni stagione.", "Acquista ora"),
    "pt-BR": _f("Nossa nova coleção chegou", "Feita para cada cidade e cada estação.", "Compre agora"),
    "nl": _f("Onze nieuwe collectie is er", "Ontworpen voor elke stad en elk seizoen.", "Nu shoppen"),
    "sv": _f("Vår nya kollektion är här", "Designad för varje stad och varje årstid.", "Handla nu"),
    "pl": _f("Nasza nowa kolekcja już jest", "Zaprojektowana na każde miasto i każdą porę roku.", "Kup teraz"),
    "cs": _f("Naše nová kolekce je tady", "Navržená pro každé město a každé roční období.", "Nakupujte nyní"),
    "tr": _f("Yeni koleksiyonumuz geldi", "Her şehir ve her mevsim için tasarlandı.", "Hemen alışveriş yap"),
    "vi": _f("Bộ sưu tập mới đã có mặt", "Thiết kế cho mọi thành phố và mọi mùa.", "Mua ngay"),
    "id": _f("Koleksi baru kami telah hadir", "Dirancang untuk setiap kota dan setiap musim.", "Belanja sekarang"),
    "ru": _f("Наша новая коллекция уже здесь", "Создана для любого города и любого сезона.", "Купить сейчас"),
    "uk": _f("Наша нова колекція вже тут", "Створена для кожного міста й кожної пори року.", "Купити зараз"),
    "bg": _f("Новата ни колекция е тук", "Създадена за всеки град и всеки сезон.", "Купете сега"),
    "sr-Cyrl": _f("Наша нова колекција је стигла", "Осмишљена за сваки град и свако годишње доба.", "Купите сада"),
    "el": _f("Η νέα μας συλλογή είναι εδώ", "Σχεδιασμένη για κάθε πόλη και κάθε εποχή.", "Αγοράστε τώρα"),
    "ar": _f("مجموعتنا الجديدة وصلت", "مصممة لكل مدينة ولكل موسم.", "تسوق الآن"),
    "fa": _f("کالکشن جدید ما رسید", "برای هر شهر و هر فصل طراحی شده است.", "همین حالا بخرید"),
    "ur": _f("ہمارا نیا کلیکشن آ گیا ہے", "ہر شہر اور ہر موسم کے لیے ڈیزائن کیا گیا۔", "ابھی خریدیں"),
    "he": _f("הקולקציה החדשה שלנו כבר כאן", "מעוצבת לכל עיר ולכל עונה.", "לקנייה עכשיו"),
    "hi": _f("हमारा नया कलेक्शन आ गया है", "हर शहर और हर मौसम के लिए डिज़ाइन किया गया।", "अभी ख़रीदें"),
    "zh-CN": _f("我们的新系列来了", "为每一座城市、每一个季节而设计。", "立即选购"),
    "zh-TW": _f("我們的新系列來了", "為每一座城市、每一個季節而設計。", "立即選購"),
    "ja": _f("新しいコレクションが登場", "どの街にも、どの季節にも似合うデザイン。", "今すぐ購入"),
    "ko": _f("새로운 컬렉션이 출시되었습니다", "모든 도시와 모든 계절을 위한 디자인.", "지금 쇼핑하기"),
}

UNCOVERED: dict[str, Fields] = {
    "th": _f("คอลเลกชันใหม่ของเรามาแล้ว", "ออกแบบมาเพื่อทุกเมืองและทุกฤดูกาล", "ช้อปเลย"),
}


def cycle(count: int) -> list[tuple[str, Fields]]:
    """``count`` (locale, fields) pairs: the samples in order, then again under tags ``<locale>-x-r<n>``."""
    locales = list(SAMPLES)
    pairs = []
    for i in range(count):
        locale = locales[i % len(locales)]
        round_ = i // len(locales)
        pairs.append((locale if round_ == 0 else f"{locale}-x-r{round_}", dict(SAMPLES[locale])))
    return pairs
