"""Failure analysis: where the model fails, by category and by cluster.

    1 stratify  test_dataset.jsonl, test_dataset_stats.json    a sample in proportion to the categories
    2 generate  model_outputs.jsonl, generation_stats.json     the adapter's answers, once, batched
    3 judge     judged_results.jsonl, failures.jsonl, summary.json
    4 cluster   clusters.json                                  TF-IDF over the failures, k-means, k by silhouette
    5 label     patterns.json, failures.png, failures.html     per cluster: codes, terms, categories, examples

Each step reads the files of the steps before it and writes its own whole (atomic rename), so a step can be run
again on its own (`--from-step N`): the outputs of step 2 are never generated twice to judge them another way.
Step 2 appends each answer as it comes (fsynced), so a run killed mid-way answers only the rest.

Categories: an item's `category` field, else the first rule of CATEGORY_RULES that its question matches, else
`qa` for a short golden answer (five words or fewer) and `other` for a long one.
"""
from __future__ import annotations

import asyncio
import functools
import json
import os
import random
import re
import textwrap
import time
from collections import Counter
from pathlib import Path

from core.errors import ProjectError
from core.fsutil import atomic_write_json, atomic_write_text, read_appended
from core.qa import QAItem
from evaluation.error_codes import code_family, error_codes
from evaluation.matching import match_answer
from evaluation.text import normalize
from inference.requests import Request

CATEGORY_RULES = (  # (category, pattern on the question), first match wins
    ("code", r"```|\bdef \w+\(|\b(python|javascript|java|c\+\+|sql|regex|function|program|code|script)\b"),
    ("creative", r"\b(write|compose|draft|create)\b.{0,20}\b(poem|story|haiku|song|essay|letter|limerick|slogan)\b"),
    ("math", r"\d\s*[-+*/×÷^=]\s*\d|\bhow (many|much)\b|\b(sum|total|average|percent|calculate|solve|equation)\b"),
    ("reasoning", r"\bif\b.*\bthen\b|\b(true or false|which of|puzzle|logic|deduce|conclude|why)\b"),
)
FLOOR = 5  # items per category kept when sampling, where a category has that many
THRESHOLD = 7  # a score below this is a failure


def infer_category(question: str, golden: str) -> str:
    for category, pattern in CATEGORY_RULES:
        if re.search(pattern, question, re.I):
            return category
    return "qa" if len(golden.split()) <= 5 else "other"


def _jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def _write_jsonl(path: Path, rows) -> None:
    atomic_write_text(path, "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows))


# -- 1 stratify -------------------------------------------------------------------------------------

def stratify(items: list[QAItem], categories: dict[str, str], n: int | None, *, seed: int = 0,
             floor: int = FLOOR) -> list[QAItem]:
    """n items (all if None or more) in proportion to the categories, each kept to at least `floor` where it has
    that many; largest remainders fill the rounding; a fixed seed picks within each category."""
    by = {}
    for item in items:
        by.setdefault(categories[item.id], []).append(item)
    if n is None or n >= len(items):
        return list(items)
    quota = {c: min(len(v), floor) for c, v in by.items()}
    left = max(n - sum(quota.values()), 0)
    spare = {c: len(v) - quota[c] for c, v in by.items()}
    total = sum(spare.values()) or 1
    share = {c: left * spare[c] / total for c in by}
    for c in by:
        quota[c] += min(int(share[c]), spare[c])
    for c in sorted(by, key=lambda c: share[c] - int(share[c]), reverse=True):
        if sum(quota.values()) >= n:
            break
        if quota[c] < len(by[c]):
            quota[c] += 1
    rng = random.Random(seed)
    keep = {id(item) for c, v in by.items() for item in rng.sample(v, quota[c])}
    return [item for item in items if id(item) in keep]  # in file order


def write_test_set(out: Path, items: list[QAItem], *, sample: int | None, seed: int) -> None:
    categories = {i.id: i.category or infer_category(i.question, i.golden) for i in items}
    chosen = stratify(items, categories, sample, seed=seed)
    _write_jsonl(out / "test_dataset.jsonl", ({"id": i.id, "category": categories[i.id], "conversation": i.conversation,
                                               "golden": i.golden, "file": i.file, "line": i.line} for i in chosen))
    atomic_write_json(out / "test_dataset_stats.json", {
        "items": len(items), "sampled": len(chosen), "seed": seed, "floor": FLOOR,
        "before": dict(Counter(categories.values()).most_common()),
        "after": dict(Counter(categories[i.id] for i in chosen).most_common())})


# -- 2 generate -------------------------------------------------------------------------------------

def generate(out: Path, engine, *, max_new_tokens: int, adapter: str) -> None:
    """The adapter's greedy answer to every test item, each appended and fsynced as it ends; resumes."""
    test = _jsonl(out / "test_dataset.jsonl")
    outputs = out / "model_outputs.jsonl"
    done = {r["id"] for r in read_appended(outputs)}
    todo = [t for t in test if t["id"] not in done]
    began, tokens = time.perf_counter(), 0
    with open(outputs, "a", encoding="utf-8") as log:
        def record(index: int, result) -> None:
            nonlocal tokens
            t, c = todo[index], result.completions[0]
            tokens += len(c.tokens)
            log.write(json.dumps({"id": t["id"], "category": t["category"], "question": t["conversation"][-1]["content"],
                                  "golden": t["golden"], "prediction": c.text, "tokens": len(c.tokens),
                                  "finish_reason": c.finish_reason,
                                  "latency": round(time.perf_counter() - began, 3)}, ensure_ascii=False) + "\n")
            log.flush()
            os.fsync(log.fileno())

        engine.generate([Request(messages=t["conversation"], max_new_tokens=max_new_tokens, stop_at_final_answer=True)
                         for t in todo], on_result=record)
    seconds = time.perf_counter() - began
    atomic_write_json(out / "generation_stats.json", {
        "items": len(test), "generated_now": len(todo), "tokens": tokens, "seconds": round(seconds, 1),
        "tokens_per_s": round(tokens / seconds, 1) if seconds else None, "adapter": adapter,
        "settings": {"max_new_tokens": max_new_tokens, "temperature": 0, "stop_at_final_answer": True}})


# -- 3 judge ----------------------------------------------------------------------------------------

def _tokens(text: str) -> list[str]:
    return re.findall(r"\w+", text.lower())


def similarity(a: str, b: str) -> float:
    """Token F1 of two texts, 0..1."""
    x, y = Counter(_tokens(a)), Counter(_tokens(b))
    common = sum((x & y).values())
    if not common:
        return 0.0
    precision, recall = common / sum(y.values()), common / sum(x.values())
    return 2 * precision * recall / (precision + recall)


def judge_fast(question: str, golden: str, prediction: str) -> dict:
    """A score 0-10 with its reason: 10 when the matcher accepts the answer, else up to 6 by how much of the
    golden answer's words the prediction has; the error codes say what is wrong."""
    m = match_answer(golden, prediction, question=question)
    if m.matched:
        return {"score": 10, "reason": f"matches ({m.reason})", "codes": [], "kind": m.kind}
    sim = similarity(golden, prediction)
    codes = error_codes(question, golden, prediction, matched=False)
    return {"score": round(6 * sim), "reason": f"{m.reason}; word overlap {sim:.2f}", "codes": codes, "kind": m.kind}


JUDGE_PROMPT = (
    "You grade a model's answers. For each item below, compare the prediction with the golden answer and give a "
    "score from 0 (wrong) to 10 (fully right, even if worded differently) and a one-sentence reason.\n\nItems:\n"
    "{items}\n\nReply with only a JSON array, one object per item, in any order: "
    '[{{"id": "...", "score": 0-10, "reason": "..."}}]')
FIELD_CHARS = 1500  # of a question, golden answer or prediction shown to the judge


def parse_verdicts(text: str, ids: set[str]) -> dict[str, tuple[int, str]]:
    """The verdicts of a judge's reply: its first JSON array, each object with a known id and a score in 0..10
    (anything else is left out, to be asked again)."""
    decoder, verdicts = json.JSONDecoder(), None
    for m in re.finditer(r"\[", text):
        try:
            value, _ = decoder.raw_decode(text, m.start())
        except ValueError:
            continue
        if isinstance(value, list):
            verdicts = value
            break
    out = {}
    for v in verdicts or []:
        if not isinstance(v, dict):
            continue
        key, score = str(v.get("id")), v.get("score")
        if key in ids and isinstance(score, (int, float)) and not isinstance(score, bool) and 0 <= score <= 10:
            out[key] = (round(score), str(v.get("reason", ""))[:500])
    return out


def _refused(error: BaseException) -> bool:
    """A request the judge turned down (HTTP 400, or a local model's ValueError), as opposed to a judge that is
    down or failing."""
    return isinstance(error, ValueError) or getattr(error, "status_code", None) == 400


async def judge_llm(rows: list[dict], provider, *, batch_size: int) -> tuple[dict[str, tuple[int, str]], int]:
    """Verdicts of a judge model, `batch_size` items per call; the items a reply left out or garbled, or a call
    the judge refused (a batch too long for its context), are asked again once, in batches half as large (not
    when the batches held one item). Returns the verdicts and the number of calls."""
    def request(batch: list[dict]) -> Request:
        items = json.dumps([{"id": r["id"], **{k: r[k][:FIELD_CHARS] for k in ("question", "golden", "prediction")}}
                            for r in batch], ensure_ascii=False, indent=0)
        return Request(messages=[{"role": "user", "content": JUDGE_PROMPT.format(items=items)}],
                       max_new_tokens=min(8192, 64 + 48 * len(batch)), temperature=0.0)

    verdicts, calls, size = {}, 0, batch_size
    pending = [rows[i:i + size] for i in range(0, len(rows), size)]
    for attempt in range(2):
        if not pending:
            break
        outcomes = await asyncio.gather(*(provider.generate([request(b)]) for b in pending), return_exceptions=True)
        calls += len(pending)
        missing = []
        for batch, outcome in zip(pending, outcomes):
            if isinstance(outcome, BaseException):
                if not _refused(outcome):  # down or failing: the answers are on disk, judging can run again
                    raise ProjectError(f"the judge ({getattr(provider, 'name', 'provider')}) did not answer: "
                                       f"{type(outcome).__name__}: {outcome}") from outcome
                text = ""  # the call was refused (a prompt over the judge's context, say): asked again smaller
            else:
                text = outcome[0].completions[0].text if outcome[0].completions else ""
            got = parse_verdicts(text, {r["id"] for r in batch})
            verdicts.update(got)
            missing += [r for r in batch if r["id"] not in got]
        size //= 2  # a batch of one cannot be asked smaller: its item falls back
        pending = [missing[i:i + size] for i in range(0, len(missing), size)] if size else []
    return verdicts, calls


def judge(out: Path, *, threshold: int = THRESHOLD, make_judge=None, batch_size: int = 50) -> dict:
    """Every answer judged: by the fast judge, or by the judge model `make_judge()` gives (a provider), where the
    fast judge stands in for the items it gave no usable verdict on (counted as fallbacks). The error codes
    always come from the fast judge: they are what the clusters are built on."""
    rows = read_appended(out / "model_outputs.jsonl")
    unjudged = [r["id"] for r in rows if not r["golden"].strip()]  # nothing to judge against: listed, not judged
    rows = [r for r in rows if r["golden"].strip()]
    judged = [{**r, **judge_fast(r["question"], r["golden"], r["prediction"]), "judge": "fast"} for r in rows]
    calls = 0
    if make_judge is not None:
        async def run():
            provider = make_judge()
            try:
                return await judge_llm(rows, provider, batch_size=batch_size)
            finally:
                await provider.close()

        verdicts, calls = asyncio.run(run())
        for r in judged:
            if r["id"] in verdicts:
                r["score"], r["reason"] = verdicts[r["id"]]
                r["judge"] = "llm"
    fallbacks = sum(1 for r in judged if r["judge"] == "fast") if make_judge is not None else 0
    failures = [r for r in judged if r["score"] < threshold]
    _write_jsonl(out / "judged_results.jsonl", judged)
    _write_jsonl(out / "failures.jsonl", failures)
    per = {}
    for r in judged:
        c = per.setdefault(r["category"], {"items": 0, "right": 0, "score": 0})
        c["items"] += 1
        c["right"] += r["score"] >= threshold
        c["score"] += r["score"]
    summary = {"items": len(judged), "failures": len(failures), "threshold": threshold, "no_golden": unjudged,
               "judge": "fast" if make_judge is None else "llm", "calls": calls, "fallbacks": fallbacks,
               "accuracy": round(1 - len(failures) / len(judged), 4) if judged else None,
               "mean_score": round(sum(r["score"] for r in judged) / len(judged), 2) if judged else None,
               "per_category": {k: {"items": v["items"], "accuracy": round(v["right"] / v["items"], 4),
                                    "mean_score": round(v["score"] / v["items"], 2)} for k, v in sorted(per.items())}}
    atomic_write_json(out / "summary.json", summary)
    return summary


# -- 4 cluster --------------------------------------------------------------------------------------

def _text(r: dict) -> str:
    return " ".join([r["question"], r["prediction"], *(code_family(c) for c in r["codes"])])


def _vectorizer():
    from sklearn.feature_extraction.text import TfidfVectorizer

    return TfidfVectorizer(max_features=5000, ngram_range=(1, 2), sublinear_tf=True, stop_words="english",
                           token_pattern=r"(?u)\b[A-Za-z_][A-Za-z_]+\b")


@functools.lru_cache(maxsize=1)
def _embedder(name: str | None):
    """The sentence-embedding model of analysis.embedding_model, or None for TF-IDF; loaded once per process
    (step 4 and --queue's step 6 use the same one)."""
    if not name:
        return None
    from inference.embedding import load_embedder

    return load_embedder(name)


def cluster(out: Path, *, k: int | None = None, seed: int = 0, embedding_model: str | None = None) -> dict:
    """Failures as vectors of their question, prediction and error codes: TF-IDF, or a local sentence-embedding
    model when one is named; k-means, k by the best silhouette in 2..8 unless given. Fewer than 4 failures make
    one cluster. A cluster's terms are its members' top TF-IDF terms in either space."""
    from sklearn.cluster import KMeans
    from sklearn.metrics import silhouette_score

    import numpy as np

    failures = _jsonl(out / "failures.jsonl")
    result = {"failures": len(failures), "k": 0, "space": embedding_model or "tfidf", "clusters": []}
    if failures:
        texts = [_text(r) for r in failures]
        vectorizer = _vectorizer()
        tfidf = vectorizer.fit_transform(texts)
        terms = vectorizer.get_feature_names_out()
        embed = _embedder(embedding_model)
        x = tfidf if embed is None else embed(texts)
        if k is None:
            tried = {}
            for n in range(2, min(8, len(failures) - 1) + 1):
                labels = KMeans(n_clusters=n, n_init=10, random_state=seed).fit_predict(x)
                if len(set(labels)) > 1:
                    # on a sample: the score is quadratic in the failures, and 2,000 of them place k as well
                    tried[n] = silhouette_score(x, labels, sample_size=min(x.shape[0], 2000), random_state=seed)
            k = max(tried, key=tried.get) if tried else 1
            result["silhouette"] = {str(n): round(float(s), 4) for n, s in tried.items()}
        k = max(1, min(k, len(failures)))
        model = KMeans(n_clusters=k, n_init=10, random_state=seed).fit(x)
        distances = model.transform(x)
        result["k"] = k
        for c in range(k):
            members = [i for i, label in enumerate(model.labels_) if label == c]
            weight = np.asarray(tfidf[members].mean(axis=0)).ravel()
            result["clusters"].append({
                "cluster": c, "size": len(members), "ids": [failures[i]["id"] for i in members],
                "terms": [str(terms[t]) for t in weight.argsort()[::-1][:8] if weight[t] > 0],
                "nearest": [failures[i]["id"] for i in sorted(members, key=lambda i: distances[i, c])[:3]]})
        result["clusters"].sort(key=lambda c: -c["size"])
    atomic_write_json(out / "clusters.json", result)
    return result


# -- 5 label ----------------------------------------------------------------------------------------

def _codes(rows: list[dict]) -> Counter:
    """How many of the rows carry each kind of code (a row counts a kind once)."""
    return Counter(kind for r in rows for kind in {code_family(code) for code in r["codes"]})


LABEL_PROMPT = (
    "A model's wrong answers were grouped by similarity. One group:\n\n{group}\n\nIn one short phrase (at most "
    "12 words), name the mistake these answers share, e.g. \"drops the last number of three-term sums\". "
    "Reply with the phrase only.")


def _group(pattern: dict) -> str:
    shown = [f"- question: {e['question'][:300]}\n  golden: {e['golden'][:200]}\n  answer: {e['prediction'][:400]}"
             for e in pattern["examples"]]
    return (f"{pattern['size']} answers; categories: {', '.join(pattern['categories'])}; error codes: "
            f"{', '.join(f'{c} ({n})' for c, n in pattern['codes'].items()) or 'none'}; frequent words: "
            f"{', '.join(pattern['terms'][:8])}\nThree of them:\n" + "\n".join(shown))


def parse_label(text: str) -> str | None:
    """The judge's phrase: its first non-empty line, without a "Label:" prefix, quotes or markup; None if empty."""
    line = next((x.strip() for x in text.splitlines() if x.strip()), "")
    line = re.sub(r"^(\*\*)?(label|pattern|phrase)\s*:\s*(\*\*)?", "", line, flags=re.I).strip(" *`\"'")
    return textwrap.shorten(line, 120) if line else None


async def llm_labels(patterns: list[dict], provider) -> list[str | None]:
    """A judge model's label for each cluster, asked all at once; None where it gave none or its call failed."""
    requests = [Request(messages=[{"role": "user", "content": LABEL_PROMPT.format(group=_group(p))}],
                        max_new_tokens=48, temperature=0.0) for p in patterns]
    outcomes = await asyncio.gather(*(provider.generate([r]) for r in requests), return_exceptions=True)
    return [None if isinstance(o, BaseException) or not o[0].completions else parse_label(o[0].completions[0].text)
            for o in outcomes]


def label(out: Path, *, make_judge=None) -> list[dict]:
    """Per cluster: its top error codes (by kind) and terms, its categories, three failures nearest its centre,
    and a label made of them, e.g. "math: NUMERIC_ERROR_MISSING_X_VALUES (61 %) - apples, gives, buys". The
    label's code is the one that sets the cluster apart (its share there above its share among all failures),
    not one every failure has. With a judge model (`make_judge()`, a provider), it also writes a label of its
    own from the same facts (`llm_label`, beside the rule-based one; None where it wrote none)."""
    failures = {r["id"]: r for r in _jsonl(out / "failures.jsonl")}
    overall = _codes(list(failures.values()))
    patterns = []
    for c in json.loads((out / "clusters.json").read_text())["clusters"]:
        members = [failures[i] for i in c["ids"]]
        codes = _codes(members)
        categories = Counter(r["category"] for r in members)
        category, n = categories.most_common(1)[0]
        category += "" if n == len(members) else f" {100 * n / len(members):.0f} %"
        share = {k: n / len(members) for k, n in codes.items()}
        lift = {k: share[k] - overall[k] / len(failures) for k in codes}
        top = max(codes, key=lambda k: (round(lift[k], 6), share[k])) if codes else None
        what = f"{top} ({100 * share[top]:.0f} %)" if top else "wrong answers"
        terms = [t for t in c["terms"] if t.upper() != t][:3]  # words, not the codes' own tokens
        patterns.append({
            "cluster": c["cluster"], "size": c["size"],
            "label": f"{category}: {what}" + (f" - {', '.join(terms)}" if terms else ""),
            "codes": {code: n for code, n in codes.most_common(5)},
            "categories": dict(categories.most_common()), "terms": c["terms"],
            "examples": [{k: failures[i][k] for k in ("id", "question", "golden", "prediction", "score", "reason")}
                         for i in c["nearest"]]})
    if make_judge is not None and patterns:
        async def run():
            provider = make_judge()
            try:
                return await llm_labels(patterns, provider)
            finally:
                await provider.close()

        for p, written in zip(patterns, asyncio.run(run())):
            p["llm_label"] = written
    atomic_write_json(out / "patterns.json", patterns)
    return patterns


# -- the picture ----------------------------------------------------------------------------------

def picture(out: Path) -> Path:
    """failures.png (failures per category, and per cluster with its label) and failures.html beside it."""
    import base64
    import html

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    summary = json.loads((out / "summary.json").read_text())
    patterns = json.loads((out / "patterns.json").read_text())
    per = summary["per_category"]
    fig, (left, right) = plt.subplots(1, 2, figsize=(13, max(3.0, 0.45 * max(len(per), len(patterns)) + 1.5)))
    names = list(per)
    left.barh(names, [round(v["items"] * (1 - v["accuracy"])) for v in per.values()], color="tab:red", label="failed")
    left.barh(names, [round(v["items"] * v["accuracy"]) for v in per.values()],
              left=[round(v["items"] * (1 - v["accuracy"])) for v in per.values()], color="tab:green", label="right")
    left.set_title(f"by category ({summary['items']} items, accuracy {summary['accuracy']:.0%})")
    left.legend(loc="lower right")
    right.barh([textwrap.shorten(p["label"], 60) for p in patterns], [p["size"] for p in patterns], color="tab:red")
    right.set_title(f"{summary['failures']} failures by cluster")
    for ax in (left, right):
        ax.invert_yaxis()
        ax.grid(axis="x", alpha=0.3)
    fig.tight_layout()
    png = out / "failures.png"
    fig.savefig(png, dpi=100)
    plt.close(fig)
    rows = "".join(
        f"<tr><td>{p['size']}</td><td>{html.escape(p['label'])}"
        + (f"<br>the judge: <i>{html.escape(p['llm_label'])}</i>" if p.get("llm_label") else "") + "</td>"
        f"<td>{html.escape(', '.join(p['codes']))}</td>"
        f"<td>{html.escape(p['examples'][0]['question'][:200])}<br><i>{html.escape(p['examples'][0]['prediction'][:300])}"
        f"</i></td></tr>" for p in patterns if p["examples"])
    page = (f"<!doctype html><meta charset='utf-8'><title>Failure analysis {html.escape(out.name)}</title>"
            f"<h1>Failure analysis {html.escape(out.name)}</h1>"
            f"<img src='data:image/png;base64,{base64.b64encode(png.read_bytes()).decode()}'>"
            f"<p>judge: {summary['judge']}; {summary['failures']} failures of {summary['items']} items.</p>"
            f"<table border=1 cellpadding=4><tr><th>failures</th><th>pattern</th><th>codes</th>"
            f"<th>nearest its centre</th></tr>{rows}</table>")
    atomic_write_text(out / "failures.html", page)
    return png


# -- 6 targeted training ---------------------------------------------------------------------------

def targeted(out: Path, candidates: list[QAItem], *, size: int | None = None) -> list[dict]:
    """A training file for the failing clusters (`targeted.jsonl`, and `targeted.json` with its counts): per
    cluster, the candidates nearest its failures in the space they were clustered in (TF-IDF or the embedding
    model's), as many as the cluster's share of `size` (default: twice the failures). Never an item of the test
    set, by id or by question: what was analysed stays a measurement."""
    import numpy as np

    failures = _jsonl(out / "failures.jsonl")
    clusters_file = json.loads((out / "clusters.json").read_text())
    clusters = clusters_file["clusters"]
    labels = {p["cluster"]: p["label"] for p in json.loads((out / "patterns.json").read_text())}
    tested = _jsonl(out / "test_dataset.jsonl")
    tested_ids, tested_questions = {t["id"] for t in tested}, {normalize(t["conversation"][-1]["content"]) for t in tested}
    pool, seen = [], set()
    for c in candidates:
        q = normalize(c.question)
        if c.id not in tested_ids and q not in tested_questions and q not in seen:
            seen.add(q)
            pool.append(c)
    records, per_cluster = [], {}
    if failures and pool:
        texts, wanted = [_text(r) for r in failures], [f"{c.question} {c.golden}" for c in pool]
        embed = _embedder(space) if (space := clusters_file.get("space", "tfidf")) != "tfidf" else None
        if embed is None:
            vectorizer = _vectorizer().fit(texts)
            x_failures, x_pool = vectorizer.transform(texts), vectorizer.transform(wanted)
        else:
            x_failures, x_pool = embed(texts), embed(wanted)
        row = {r["id"]: k for k, r in enumerate(failures)}
        size = size or 2 * len(failures)
        taken: set[int] = set()
        for c in clusters:
            centre = np.asarray(x_failures[[row[i] for i in c["ids"]]].mean(axis=0)).ravel()
            near = np.asarray(x_pool @ centre).ravel()
            quota, got = max(1, round(size * c["size"] / len(failures))), 0
            for j in np.argsort(-near, kind="stable"):
                if got >= quota:
                    break
                if j in taken:
                    continue
                taken.add(j)
                got += 1
                item = pool[j]
                records.append({"messages": [*item.conversation, {"role": "assistant", "content": item.golden}],
                                "analysis": {"folder": out.name, "cluster": c["cluster"], "label": labels[c["cluster"]],
                                             "similarity": round(float(near[j]), 4), "source": item.file}})
            per_cluster[str(c["cluster"])] = got
    _write_jsonl(out / "targeted.jsonl", records)
    atomic_write_json(out / "targeted.json", {"records": len(records), "candidates": len(candidates),
                                              "usable": len(pool), "per_cluster": per_cluster})
    return records



def queue_targeted(out: Path, candidates: list[QAItem], *, outbox, events) -> str | None:
    """Step 6: the targeted training file from `candidates` (the analysed file's items and the user's files
    trained before), queued through `outbox` at high priority. The test set is held out: what was analysed
    stays a measurement. Returns the queued file's name, or None when no candidate is near the failures."""
    records = targeted(out, candidates)
    if not records:
        events.emit("analysis", "6 queue: no item outside the test set is near the failures; nothing queued", step=6)
        return None
    queued = outbox.add(f"targeted-{out.name}.jsonl", (out / "targeted.jsonl").read_bytes(), "high")
    counts = json.loads((out / "targeted.json").read_text())["per_cluster"]
    events.emit("analysis", f"6 queue: {len(records)} examples near the failing clusters ("
                + ", ".join(f"cluster {k}: {v}" for k, v in counts.items()) + f") -> queue/high/{queued.name}",
                step=6, file=queued.name)
    return queued.name

# -- the steps in order ------------------------------------------------------------------------------

STEPS = {1: "test_dataset_stats.json", 2: "generation_stats.json", 3: "summary.json", 4: "clusters.json",
         5: "patterns.json"}  # the file that marks each step done: it is written last


def analyze(items: list[QAItem], out: Path, *, load_engine, events, sample: int | None = None,
            seed: int = 0, from_step: int | None = None, max_new_tokens: int = 256, clusters: int | None = None,
            threshold: int = THRESHOLD, make_judge=None, batch_size: int = 50,
            embedding_model: str | None = None) -> list[dict]:
    """Steps 1-5 into `out`: from `from_step` on, or else from the first step not finished there (so a run cut
    short continues where it stopped; a step finished in a run cut short mid-way resumes its own file).
    `load_engine()` gives the sampling engine and the adapter's name, loaded only if step 2 runs; `make_judge()`
    a judge model's provider (None: the fast judge), which also labels the clusters; `embedding_model` a local
    sentence-embedding model to cluster with (None: TF-IDF)."""
    out.mkdir(parents=True, exist_ok=True)
    first = from_step or next((s for s in STEPS if not (out / STEPS[s]).exists()), len(STEPS) + 1)
    for step in range(1, first):
        if not (out / STEPS[step]).exists():
            raise ProjectError(f"{out}: step {step} never finished ({STEPS[step]} is missing); "
                                    f"run from step {step}: --from-step {step}")

    def due(step: int) -> bool:
        return step >= first

    if due(1):
        write_test_set(out, items, sample=sample, seed=seed)
        stats = json.loads((out / STEPS[1]).read_text())
        events.emit("analysis", f"1 stratify: {stats['sampled']} of {stats['items']} items, by category "
                    + ", ".join(f"{k} {v}" for k, v in stats["after"].items()), step=1)
    if due(2):
        if from_step is not None:
            (out / "model_outputs.jsonl").unlink(missing_ok=True)  # asked to generate again: from scratch
        engine, adapter = load_engine()
        generate(out, engine, max_new_tokens=max_new_tokens, adapter=adapter)
        stats = json.loads((out / STEPS[2]).read_text())
        events.emit("analysis", f"2 generate: {stats['items']} answers with {adapter}, {stats['tokens_per_s']} tok/s, "
                    f"{stats['seconds']}s", step=2)
    if due(3):
        s = judge(out, threshold=threshold, make_judge=make_judge, batch_size=batch_size)
        per = ", ".join(f"{k} {v['accuracy']:.0%}" for k, v in s["per_category"].items())
        llm = f", {s['calls']} calls, {s['fallbacks']} fell back to the fast judge" if make_judge else ""
        events.emit("analysis", f"3 judge ({s['judge']}{llm}): {s['failures']} failures of {s['items']} "
                    f"(accuracy {s['accuracy']:.0%}; {per})", step=3)
    if due(4):
        c = cluster(out, k=clusters, seed=seed, embedding_model=embedding_model)
        events.emit("analysis", f"4 cluster ({c['space']}): {c['failures']} failures in {c['k']} clusters "
                    f"({', '.join(str(x['size']) for x in c['clusters'])})", step=4)
    if due(5):
        patterns = label(out, make_judge=make_judge)
        picture(out)
        for p in patterns[:5]:
            written = f" (the judge: {p['llm_label']})" if p.get("llm_label") else ""
            events.emit("analysis", f"5 pattern: {p['size']} failures: {p['label']}{written}", step=5)
        if make_judge is not None and (missing := sum(1 for p in patterns if not p.get("llm_label"))):
            events.emit("analysis", f"5 the judge wrote no label for {missing} of {len(patterns)} clusters: "
                        "the rule-based labels stand", step=5)
        events.emit("analysis", f"the picture: {out / 'failures.png'} (and failures.html)", step=5)
    return json.loads((out / STEPS[5]).read_text())
