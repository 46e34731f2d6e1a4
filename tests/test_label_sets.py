"""Training label sets (gliner/training.py: choose_label_sets): which types each example is trained against, in
which slots."""
import random
from collections import Counter

from gliner.training import Example, choose_label_sets


def test_closed_label_sets_are_shuffled_and_never_widened():
    closed = Example(["Cisplatin", "is", "toxic"], [(0, 0, "chemical")], label_set=["chemical", "disease", "gene"])
    open_example = Example(["BRCA1"], [(0, 0, "gene")])
    rng = random.Random(0)
    first_slot = Counter()
    for _ in range(300):
        closed_set, open_set = choose_label_sets([closed, open_example], max_types=25, max_neg_type_ratio=1, rng=rng)
        assert sorted(closed_set) == ["chemical", "disease", "gene"]  # no sampled negatives join a closed set
        assert set(open_set) <= {"chemical", "gene"} and "gene" in open_set  # its own type, maybe the batch's other
        first_slot[closed_set[0]] += 1
    # Every type takes the first slot about a third of the time: a slot says nothing about the label in it.
    assert set(first_slot) == {"chemical", "disease", "gene"} and min(first_slot.values()) > 70, first_slot
    assert choose_label_sets([Example(["x"], [], label_set=[])], 25, 1, rng) == [[""]]
