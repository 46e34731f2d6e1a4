"""Comparing two runs' entities, where floating-point noise may decide near ties: the same spans, labels and scores
(within TOLERANCE), except in groups of overlapping differing entities that hold a near tie (two scores, or a score
and the threshold, within TOLERANCE). Entities are {"start", "end", "label", "score", "text"}, in upstream's order."""


TOLERANCE = 1e-5


def key(entity: dict) -> tuple:
    return entity["start"], entity["end"], entity["label"]


def assert_same_predictions(ours: list[dict], theirs: list[dict], context: str, threshold: float) -> int:
    """Asserts the entities match up to near ties (module docstring); returns how many differ."""
    for a, b in zip(ours, ours[1:]):  # upstream's order: by start, then by score, highest first (ties either way)
        in_order = a["start"] < b["start"] or (a["start"] == b["start"] and a["score"] >= b["score"] - TOLERANCE)
        assert in_order, f"{context}: {a} before {b} is not upstream's order"
    ours_by_key, theirs_by_key = {key(e): e for e in ours}, {key(e): e for e in theirs}
    assert len(ours_by_key) == len(ours), f"{context}: an entity twice"
    for shared in ours_by_key.keys() & theirs_by_key.keys():
        a, b = ours_by_key[shared], theirs_by_key[shared]
        assert a["text"] == b["text"] and abs(a["score"] - b["score"]) <= TOLERANCE, (context, a, b)
    only_ours = [e for k, e in ours_by_key.items() if k not in theirs_by_key]
    only_theirs = [e for k, e in theirs_by_key.items() if k not in ours_by_key]
    for group in overlap_groups(only_ours + only_theirs):
        assert has_near_tie(group, threshold), f"{context}: {group} differ without a near tie"
    return len(only_ours) + len(only_theirs)


def overlap_groups(entities: list[dict]) -> list[list[dict]]:
    """Connected groups of entities whose character ranges overlap."""
    groups: list[list[dict]] = []
    for entity in sorted(entities, key=lambda e: (e["start"], e["end"])):
        if groups and entity["start"] < max(e["end"] for e in groups[-1]):
            groups[-1].append(entity)
        else:
            groups.append([entity])
    return groups


def has_near_tie(group: list[dict], threshold: float) -> bool:
    scores = sorted(e["score"] for e in group)
    near_each_other = any(b - a <= TOLERANCE for a, b in zip(scores, scores[1:]))
    return near_each_other or any(abs(score - threshold) <= TOLERANCE for score in scores)
