"""The document chat's views: what models/rag returns, as HTML, Markdown and table rows.

Text from documents, file names and the model reaches the page only through `escape`
(tabs/common.py), so markup in a chunk or a name stays text.
"""

from __future__ import annotations

from models.rag.chain import RagTurn
from models.rag.citations import CitedAnswer
from models.rag.evaluation import EvalReport
from models.rag.grounded import GroundedTurn
from models.rag.ingest import IngestReport
from models.rag.listing import DocumentInfo
from tabs.common import escape

REPORT_HEADERS = ["file", "status", "kind", "pages", "chunks", "message"]
PREVIEW_HEADERS = ["file", "chunks", "mean size", "max size", "note"]
DOC_HEADERS = ["file", "kind", "chunks", "pages", "KB", "id"]
HIT_HEADERS = ["rank", "cosine", "dense rank", "keyword rank", "fused", "used", "file", "page", "chunk"]
EVAL_HEADERS = ["question", "document", "rank", "top source"]
ANSWER_EVAL_HEADERS = ["settings", "hit@k", "MRR@k", "answer accuracy", "refusal recall", "refusal precision",
                       "unsupported rate", "unanswerable shown supported", "s / question"]
NO_CHUNK_HTML = "<div class='rag-sources'><em>No chunk passed the threshold.</em></div>"


def sources_html(cited: CitedAnswer, show_uncited: bool = True) -> str:
    """The sources panel: number, file, page, score, chunk text with the matched sentence marked."""
    if not cited.sources:
        return "<div class='rag-sources'><em>No chunks were used.</em></div>"
    items = []
    for src in cited.sources:
        if not src.cited_by and not show_uncited:
            continue
        hit, text = src.hit, src.hit.text
        if src.highlight:
            a, b = src.highlight
            body = f"{escape(text[:a])}<mark>{escape(text[a:b])}</mark>{escape(text[b:])}"
        else:
            body = escape(text)
        where = escape(hit.source) + (f", page {hit.page}" if hit.page else "")
        tag = " · sample corpus" if hit.shared else ""
        cited_note = (f"cited by sentence {', '.join(str(i + 1) for i in src.cited_by)}"
                      if src.cited_by else "not cited")
        items.append(
            f"<details class='rag-source' {'open' if src.cited_by else ''}>"
            f"<summary><b>[{src.number}]</b> {where} — score {hit.score:.2f}{tag} — {cited_note}</summary>"
            f"<div class='rag-chunk' style='white-space:pre-wrap'>{body}</div></details>")
    return "<div class='rag-sources'>" + "".join(items) + "</div>"


def turn_sources_html(turn: RagTurn) -> str:
    """The sources panel of a finished turn (or why there is none), after the answer's check and the
    refusal rule's signals for a grounded turn."""
    checks = checks_html(turn) if isinstance(turn, GroundedTurn) else ""
    return checks + (sources_html(turn.cited) if turn.cited else NO_CHUNK_HTML)


SIGNAL_NAMES = {"best_sentence": "best sentence cosine", "coverage": "keyword coverage (IDF-weighted)",
                "top_cosine": "best chunk cosine", "fused": "fused rank share (1 = first in both)",
                "model_refused": "the model declined", "supported": "answer supported",
                "on_topic": "answer about the question", "invented": "figures or names found nowhere in what it read",
                "denies": "the answer is a denial"}


def checks_html(turn: GroundedTurn) -> str:
    """The answer check (a mark per claim), the decision with its reason, the signals and the rule."""
    parts = []
    if turn.decision is not None:
        parts.append(f"<div class='rag-decision rag-{escape(turn.decision.action)}'><b>Decision: "
                     f"{escape(turn.decision.action)}</b> — {escape(turn.decision.reason)}</div>")
    claims = turn.verification.claims if turn.verification else []
    if claims:
        items = []
        for c in claims:
            mark = ("<span class='rag-mark rag-supported'>✓ supported</span>" if c.supported else
                    "<span class='rag-mark rag-unsupported'>✗ unsupported</span>")
            where = f" [{c.cites[0]}] “{escape(c.evidence.text)}”" if c.evidence is not None else ""
            why = f" — {escape(c.reason)}" if c.reason else ""
            items.append(f"<li class='rag-claim'>{mark} “{escape(c.text)}”{why}<br><small>closest source "
                         f"sentence (cosine {c.similarity:.2f}):{where}</small></li>")
        parts.append("<div class='rag-check'><b>Answer checked against the sources</b><ul>" + "".join(items)
                     + "</ul></div>")
    if turn.quote is not None:
        parts.append(f"<div class='rag-quote'>Quoted instead: [{turn.quote.chunk + 1}] “{escape(turn.quote.text)}”"
                     "</div>")
    if turn.signals is not None:
        rows = "".join(f"<tr><td>{escape(SIGNAL_NAMES.get(k, k))}</td><td>{escape(_fmt(v))}</td></tr>"
                       for k, v in turn.signals.as_dict().items())
        rule = f"<p class='rag-rule'>{escape(turn.rule.describe())}</p>" if turn.rule is not None else \
            "<p class='rag-rule'>No refusal rule: only the cosine threshold refuses.</p>"
        parts.append("<details class='rag-signals'><summary>Refusal signals and rule</summary>"
                     f"<table>{rows}</table>{rule}</details>")
    return "<div class='rag-checks'>" + "".join(parts) + "</div>" if parts else ""


def _fmt(value) -> str:
    if value is None:
        return "—"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, list):
        return ", ".join(map(str, value)) or "none"
    return f"{value:.2f}" if isinstance(value, float) else str(value)


def standalone_note(turn: RagTurn) -> str:
    return f"**Standalone question:** {escape(turn.standalone)} _({turn.rewrite_note})_"


def hit_rows(turn: RagTurn, threshold: float) -> list[list]:
    """One row per retrieved chunk: rank, cosine, its rank in the dense and the keyword (BM25) search
    and the fused share, whether it was used (or why not), where, a snippet."""
    used, cut = {h.id for h in turn.used}, {h.id for h in turn.cut}
    rows = []
    for rank, h in enumerate(turn.hits, 1):
        state = "yes" if h.id in used else ("cut (no room)" if h.id in cut else
                                            ("below threshold" if h.score < threshold else "no"))
        snippet = h.text[:160] + ("…" if len(h.text) > 160 else "")
        rows.append([rank, round(h.score, 3), h.dense_rank or "—", h.keyword_rank or "—",
                     "—" if h.fused is None else round(h.fused, 3), state,
                     h.source + (" (sample)" if h.shared else ""), h.page or "", snippet])
    return rows


def prompt_note(turn: RagTurn, context_tokens: int, max_new_tokens: int) -> str:
    if turn.prompt is None:
        return "No prompt was sent: no chunk passed the relevance threshold."
    note = (f"**{turn.prompt.n_tokens} tokens** in the prompt, {max_new_tokens} reserved for the answer "
            f"(context budget {context_tokens}). {len(turn.used)} chunk(s) numbered in the prompt.")
    if turn.cut:
        note += f" Cut to fit: {', '.join(escape(h.source) for h in turn.cut)}."
    return note


INCOMPLETE = "incomplete: not searched"


def document_rows(docs: list[DocumentInfo]) -> list[list]:
    return [[d.source, d.kind if d.complete else f"{d.kind} ({INCOMPLETE})", d.chunks, d.pages,
             round(d.n_bytes / 1024, 1), d.doc_id[:12]] for d in docs]


def document_choices(docs: list[DocumentInfo]) -> list[tuple[str, str]]:
    return [(f"{d.source} ({d.doc_id[:8]}{'' if d.complete else ', ' + INCOMPLETE})", d.doc_id) for d in docs]


def ingest_status(report: IngestReport) -> str:
    return (f"**{len(report.added)} of {len(report.files)} file(s) indexed**, {report.chunks_added} chunks. "
            f"{report.timing_text()}")


def eval_summary(report: EvalReport, chunk_size: int, unit: str) -> str:
    s = report.summary()
    return (f"**hit@{s['k']} = {s['hit@k']:.2f}**, **MRR@{s['k']} = {s['mrr@k']:.2f}** over "
            f"{len(report.rows)} questions, {s['chunks']} chunks of {chunk_size} {unit} "
            f"(document hit@{s['k']} {s['doc_hit@k']:.2f}; {s['answerable']:.0%} of answers fit whole in one chunk).")


def eval_rows(report: EvalReport) -> list[list]:
    return [[r["question"], r["document"], r["rank"] or "miss", r["top source"]] for r in report.rows]


def answer_eval_rows(results: dict[str, dict], k: int) -> list[list]:
    """One row per setting of the answer evaluation (models/rag/quality.summarize's figures)."""
    keys = [f"hit@{k}", f"mrr@{k}", "answer_accuracy", "refusal_recall", "refusal_precision", "unsupported_rate",
            "unanswerable_shown_supported", "seconds_per_question"]
    return [[name] + [figures[key] for key in keys] for name, figures in results.items()]


def answer_eval_summary(results: dict[str, dict], n_questions: int, k: int) -> str:
    s = results["current settings"]
    return (f"**Current settings**, {n_questions} held-out questions ({s['answerable']} answerable, "
            f"{s['unanswerable']} not): answer accuracy **{s['answer_accuracy']:.0%}**, refusal recall "
            f"**{s['refusal_recall']:.0%}** at precision **{s['refusal_precision']:.0%}**, "
            f"{s['unsupported_rate']:.0%} of answers flagged unsupported (and quoted instead), hit@{k} "
            f"{s[f'hit@{k}']:.2f}, MRR@{k} {s[f'mrr@{k}']:.2f}.")
