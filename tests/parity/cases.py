"""The texts and label sets both parity scripts predict on (plain data: importable from either venv)."""

SHORT_LABELS = ["disease", "chemical", "gene"]

MANY_LABELS = [
    "disease", "chemical", "gene", "protein", "cell type", "cell line", "species", "anatomical structure",
    "drug", "symptom", "dosage", "medical procedure", "organism", "mutation", "biomarker", "pathway",
    "clinical outcome", "adverse drug event", "laboratory test", "medical device",
]

_LONG_ABSTRACT = (
    "Familial Mediterranean fever (FMF) is an autosomal recessive disorder characterized by recurrent episodes of "
    "fever and serosal inflammation. The gene responsible, MEFV, encodes pyrin, and mutations such as M694V and "
    "V726A account for most cases in Armenian, Arab, Turkish and non-Ashkenazi Jewish populations. Colchicine "
    "prevents attacks and the development of amyloidosis, the most severe complication of the disease, which can "
    "lead to renal failure. We sequenced 120 patients and found that compound heterozygotes had earlier onset."
)

PARITY_TEXTS = [
    "Aspirin reduces the risk of myocardial infarction in diabetic patients.",
    "BRCA1 and BRCA2 mutations increase the risk of breast and ovarian cancer.",
    "x",
    "Fever.",
    "  Leading and trailing whitespace around cystic fibrosis.  ",
    "Tumour necrosis factor-alpha (TNF-α) levels rose after LPS stimulation in RAW 264.7 cells.",
    "Patients received 5 mg/kg/day of cyclosporin A (CsA) for 12 weeks; 3/20 developed nephrotoxicity.",
    "Le traitement par méthotrexate a amélioré la polyarthrite rhumatoïde chez 40 % des patients.",
    "Die Behandlung mit Ibuprofen linderte die Kopfschmerzen.",
    "Ärzte in Zürich beobachteten Übelkeit und Müdigkeit nach der Impfung.",
    "Δ9-tetrahydrocannabinol (Δ9-THC) binds CB1 receptors; see also β-amyloid and α-synuclein.",
    "患者 was treated with 青霉素 for pneumonia.",
    "Emoji test 😷🤒 patients with COVID-19 and SARS-CoV-2 infection.",
    "U.S. FDA-approved drugs: e.g., imatinib, don't cause hepatotoxicity in most cases.",
    "Hyphenated-words, snake_case_tokens and e-mail style tokens: anti-TNF, IL-6-mediated, p53_wt.",
    "(((nested))) [brackets] {braces} <angles> \"quotes\" 'single' — dashes – and … ellipses",
    "Mutations in the cystic fibrosis transmembrane conductance regulator (CFTR) gene cause cystic fibrosis.",
    "Type 2 diabetes mellitus and diabetic nephropathy were associated with elevated HbA1c.",
    "The SARS-CoV-2 spike protein binds angiotensin-converting enzyme 2 (ACE2) on alveolar epithelial cells.",
    "Escherichia coli O157:H7 causes hemolytic uremic syndrome in children.",
    "Metformin, sitagliptin and insulin glargine were compared in a randomized controlled trial.",
    "Breast cancer cells (MCF-7) were treated with tamoxifen and doxorubicin.",
    "Alzheimer's disease is characterised by amyloid plaques and neurofibrillary tangles.",
    "Chronic obstructive pulmonary disease exacerbations were treated with prednisolone and salbutamol.",
    "The patient, a 45-year-old man, presented with chest pain, dyspnea, and diaphoresis.",
    "Huntington disease is caused by CAG repeat expansion in the HTT gene on chromosome 4p16.3.",
    "Mice lacking Apoe developed atherosclerosis on a high-fat diet.",
    "Tab\tseparated\ttext with\nnewlines\r\nand  multiple   spaces.",
    "1 2 3 4 5 6 7 8 9 10",
    "?!?!",
    _LONG_ABSTRACT,
    _LONG_ABSTRACT + " " + _LONG_ABSTRACT,
    # Many subwords per word: with the 20-label prompt this overflows the tokenizer window (token truncation).
    " ".join(["dimethylaminopropylcarbodiimide-hydroxysuccinimide-polyethyleneglycol-conjugated"] * 40),
]


def bisect_threshold(inference, labels, entities_per_text: float) -> float:
    """The threshold (4 decimals) at which flat predictions on the first texts average `entities_per_text`."""
    sample = PARITY_TEXTS[:12]
    low, high = 0.0, 1.0
    for _ in range(14):
        middle = (low + high) / 2
        found = sum(len(p) for p in inference(sample, labels, middle, True, False))
        low, high = (middle, high) if found > entities_per_text * len(sample) else (low, middle)
    return round((low + high) / 2, 4)


DECISIVE_WINDOWS = ((0.1, 0.3), (0.3, 0.6))  # (low, high) threshold windows for trained models


def decisive_threshold(scores: list[float], low: float, high: float) -> float:
    """The threshold (4 decimals) in [low, high] farthest from every candidate span's score: the middle of the widest
    gap between consecutive scores there."""
    points = [low] + sorted(s for s in scores if low < s < high) + [high]
    a, b = max(zip(points, points[1:]), key=lambda pair: pair[1] - pair[0])
    return round((a + b) / 2, 4)


def build_cases(inference, candidate_scores=None) -> list[dict]:
    """The prediction settings recorded per model; `inference(texts, labels, threshold, flat_ner, multi_label)`.
    Random models: thresholds bisected to about 4 and 1.5 flat entities per text. Trained models, given
    `candidate_scores(labels)` (the scores of every candidate span of PARITY_TEXTS): each threshold is the point of
    its window (DECISIVE_WINDOWS) farthest from every candidate score, so that no decision rests on a near tie."""
    thresholds = {}
    for name, labels in (("short", SHORT_LABELS), ("many", MANY_LABELS)):
        if candidate_scores is None:
            thresholds[name] = bisect_threshold(inference, labels, 4.0), bisect_threshold(inference, labels, 1.5)
        else:
            scores = candidate_scores(labels)
            thresholds[name] = tuple(decisive_threshold(scores, *window) for window in DECISIVE_WINDOWS)
    (short_low, short_high), (many_low, many_high) = thresholds["short"], thresholds["many"]
    return [
        {"labels": SHORT_LABELS, "threshold": short_low, "flat_ner": True, "multi_label": False},
        {"labels": SHORT_LABELS, "threshold": short_high, "flat_ner": True, "multi_label": False},
        {"labels": SHORT_LABELS, "threshold": short_low, "flat_ner": False, "multi_label": False},
        {"labels": SHORT_LABELS, "threshold": short_low, "flat_ner": True, "multi_label": True},
        {"labels": MANY_LABELS, "threshold": many_low, "flat_ner": True, "multi_label": False},
        {"labels": MANY_LABELS, "threshold": many_high, "flat_ner": False, "multi_label": True},
    ]


def predict_cases(inference, cases: list[dict]) -> list[dict]:
    return [
        dict(case, predictions=inference(PARITY_TEXTS, case["labels"], case["threshold"], case["flat_ner"], case["multi_label"]))
        for case in cases
    ]


DESCRIPTIONS = {
    "disease": "disease, disorder or syndrome",
    "chemical": "chemical compound or drug",
    "gene": "gene or gene product",
}


def label_form_cases() -> dict:
    """Labels given as descriptions, and one label set per text (lists and description mappings in turn)."""
    per_text_forms = [SHORT_LABELS, {"disease": DESCRIPTIONS["disease"], "chemical": DESCRIPTIONS["chemical"]}, ["gene", "disease"]]
    return {
        "descriptions": dict(DESCRIPTIONS),
        "per_text": [per_text_forms[index % len(per_text_forms)] for index in range(len(PARITY_TEXTS))],
    }
