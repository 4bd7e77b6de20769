"""Chat with your documents: retrieval-augmented generation, one visible step at a time.

What it teaches: documents are parsed, split into chunks (see the boundaries), embedded with
MiniLM and stored in a vector database; a question is rewritten to stand alone, the nearest
chunks are retrieved with their scores, numbered into the prompt, and the small model answers
from them, each sentence linked to the chunk it is closest to. Below the relevance threshold
the bot says the documents don't hold the answer; a side-by-side shows the model without
retrieval. Each browser session has its own private collection, removed when it ends.
"""

from __future__ import annotations

from pathlib import Path

import gradio as gr

from models.rag import chain as rag_chain
from models.rag.chunking import boundary_preview, make_splitter, size_stats, split_document
from models.rag.citations import cite, sources_html
from models.rag.evaluation import CORPUS_DIR, evaluate, load_questions
from models.rag.ingest import STAGES, ensure_sample, ingest, max_upload_bytes, parse_files
from models.rag.store import DocumentStore
from models.registry import ModelRegistry
from tabs.common import escape, model_queue, user_errors

REPORT_HEADERS = ["file", "status", "kind", "pages", "chunks", "message"]
DOC_HEADERS = ["file", "kind", "chunks", "pages", "KB", "id"]
HIT_HEADERS = ["rank", "score", "used", "file", "page", "chunk"]
STAGE_SPAN = {"parse": (0.0, 0.1), "split": (0.1, 0.2), "embed": (0.2, 0.9), "store": (0.9, 1.0)}
# A question shares the model's context budget with the retrieved chunks; ~2,000 characters is
# ~500 tokens, which leaves room for them.
MAX_QUESTION_CHARS = 2000


def session_of(request: gr.Request | None) -> str:
    session = getattr(request, "session_hash", None)
    if not session:
        raise gr.Error("No browser session: reload the page.")
    return session


def check_question_length(question: str) -> None:
    if len(question) > MAX_QUESTION_CHARS:
        raise gr.Error(f"The question has {len(question):,} characters; ask in at most {MAX_QUESTION_CHARS:,} "
                       "so the retrieved chunks still fit beside it.")


def splitter_for(registry: ModelRegistry, chunk_size, overlap, unit):
    try:
        return make_splitter(int(chunk_size), int(overlap), unit, registry.sentence_encoder().tokenizer)
    except ValueError as exc:
        raise gr.Error(str(exc)) from None


def read_uploads(files) -> list[tuple[str, bytes]]:
    out = []
    for f in files or []:
        path = Path(getattr(f, "name", None) or f)
        out.append((path.name, path.read_bytes()))
    return out


def doc_rows(store: DocumentStore, session: str) -> tuple[list[list], dict]:
    docs = store.documents(session)
    rows = [[d.source, d.kind, d.chunks, d.pages, round(d.n_bytes / 1024, 1), d.doc_id[:12]] for d in docs]
    choices = [(f"{d.source} ({d.doc_id[:8]})", d.doc_id) for d in docs]
    return rows, gr.update(choices=choices, value=None)


# ---- handlers (plain functions: unit-testable with a fake request) ----------------------------
@user_errors
def preview(registry, settings, files, chunk_size, overlap, unit):
    """Chunk counts per file and the boundaries of the first file, before anything is indexed; each
    file goes through the same parse stage (name, size and parser guards) as ingestion."""
    uploads = read_uploads(files)
    if not uploads:
        raise gr.Error("Choose one or more files to preview.")
    splitter = splitter_for(registry, chunk_size, overlap, unit)
    tokenizer = registry.sentence_encoder().tokenizer
    rows, segments = [], []
    for result, doc in parse_files(uploads, max_upload_bytes(settings)):
        if doc is None:
            rows.append([result.name, 0, 0, 0, result.message])
            continue
        chunks = split_document(doc, splitter)
        stats = size_stats(chunks, tokenizer)
        rows.append([doc.name, stats["chunks"], stats["mean"], stats["max"], f"{doc.kind}, {len(doc.pages)} page(s)"])
        if not segments:
            segments = boundary_preview(doc, chunks)
    return rows, segments


@user_errors
def ingest_files(registry, store, files, chunk_size, overlap, unit, request: gr.Request,
                 progress=gr.Progress()):
    """Parse, split, embed and store; one row per file in the report."""
    session = session_of(request)
    uploads = read_uploads(files)
    if not uploads:
        raise gr.Error("Choose one or more files to index.")
    splitter = splitter_for(registry, chunk_size, overlap, unit)

    def on_stage(stage: str, fraction: float, desc: str) -> None:
        lo, hi = STAGE_SPAN[stage]
        progress(lo + (hi - lo) * fraction, desc=f"{STAGES.index(stage) + 1}/4 {stage}: {desc}")

    report = ingest(store, session, uploads, splitter, progress=on_stage)
    for problem in report.problems:
        gr.Warning(problem.message)
    status = (f"**{len(report.added)} of {len(report.files)} file(s) indexed**, {report.chunks_added} chunks. "
              f"{report.timing_text()}")
    rows, choices = doc_rows(store, session)
    return report.rows(), status, rows, choices


@user_errors
def list_documents(store, request: gr.Request):
    return doc_rows(store, session_of(request))


@user_errors
def delete_document(store, doc_id, request: gr.Request):
    session = session_of(request)
    if not doc_id:
        raise gr.Error("Pick a document to delete.")
    removed = store.delete_document(session, doc_id)
    if not removed:
        gr.Warning("That document is not in this session (already deleted?).")
    rows, choices = doc_rows(store, session)
    return rows, choices, f"Deleted {removed} chunks." if removed else ""


@user_errors
def reset_session(store, request: gr.Request):
    store.drop_session(session_of(request))
    return [], gr.update(choices=[], value=None), "Session reset: your documents were removed.", [], None, "", ""


def hit_rows(turn: rag_chain.RagTurn, threshold: float) -> list[list]:
    used, cut = {h.id for h in turn.used}, {h.id for h in turn.cut}
    rows = []
    for rank, h in enumerate(turn.hits, 1):
        state = "yes" if h.id in used else ("cut (no room)" if h.id in cut else
                                            ("below threshold" if h.score < threshold else "no"))
        snippet = h.text[:160] + ("…" if len(h.text) > 160 else "")
        rows.append([rank, round(h.score, 3), state, h.source + (" (sample)" if h.shared else ""),
                     h.page or "", snippet])
    return rows


def prompt_note(turn: rag_chain.RagTurn, settings, max_new_tokens: int) -> str:
    if turn.prompt is None:
        return "No prompt was sent: no chunk passed the relevance threshold."
    note = (f"**{turn.prompt.n_tokens} tokens** in the prompt, {max_new_tokens} reserved for the answer "
            f"(context budget {settings.context_tokens}). {len(turn.used)} chunk(s) numbered in the prompt.")
    if turn.cut:
        note += f" Cut to fit: {', '.join(escape(h.source) for h in turn.cut)}."
    return note


@user_errors
def ask(registry, store, settings, question, history, top_k, threshold, use_mmr, include_sample, compare,
        request: gr.Request, progress=gr.Progress()):
    """Stream (chat, question box, standalone, hits, sources, prompt, prompt note, plain answer)."""
    session = session_of(request)
    question = (question or "").strip()
    if not question:
        gr.Warning("Type a question first.")
        yield (gr.skip(),) * 8
        return
    check_question_length(question)  # before anything is shown: the question stays in its box
    history = list(history or [])
    encoder = registry.sentence_encoder()
    if include_sample:
        progress(0.05, desc="Preparing the sample corpus (first use only)…")
        ensure_sample(store, CORPUS_DIR, encoder.tokenizer)
    lm = registry.chat_model()
    k, threshold = int(top_k), float(threshold)

    def search(query: str):
        return store.search(session, query, k, include_sample=bool(include_sample), mmr=bool(use_mmr))

    max_new = 120
    chat = history + [{"role": "user", "content": question}, {"role": "assistant", "content": "…"}]
    turn = None
    for turn in rag_chain.answer(lm, search, question, history, threshold=threshold, max_new_tokens=max_new,
                                 context_tokens=settings.context_tokens):
        chat[-1] = {"role": "assistant", "content": turn.answer or "…"}
        standalone = f"**Standalone question:** {escape(turn.standalone)} _({turn.rewrite_note})_"
        yield (chat, "", standalone, hit_rows(turn, threshold), gr.skip(),
               turn.prompt.text if turn.prompt else "", prompt_note(turn, settings, max_new), gr.skip())
    cited = cite(encoder, turn.answer, turn.used) if turn.grounded else None
    chat[-1] = {"role": "assistant", "content": cited.text if cited else turn.answer}
    panel = sources_html(cited) if cited else "<div class='rag-sources'><em>No chunk passed the threshold.</em></div>"
    yield chat, "", gr.skip(), gr.skip(), panel, gr.skip(), gr.skip(), gr.skip()
    if compare:
        plain = ""
        for plain in rag_chain.answer_without_retrieval(lm, question, max_new_tokens=max_new,
                                                        context_tokens=settings.context_tokens):
            yield (gr.skip(),) * 7 + (plain,)


@user_errors
def ask_api(registry, store, settings, question: str, top_k: int, threshold: float, use_mmr: bool,
            include_sample: bool, request: gr.Request) -> dict:
    """rag_ask: question -> {answer (with [n] markers), standalone, grounded, sources}."""
    session = session_of(request)
    if not (question or "").strip():
        raise gr.Error("The question is empty.")
    check_question_length(question.strip())
    encoder = registry.sentence_encoder()
    if include_sample:
        ensure_sample(store, CORPUS_DIR, encoder.tokenizer)

    def search(query: str):
        return store.search(session, query, int(top_k), include_sample=bool(include_sample), mmr=bool(use_mmr))

    turn = None
    for turn in rag_chain.answer(registry.chat_model(), search, question, [], threshold=float(threshold),  # noqa: B007
                                 context_tokens=settings.context_tokens):
        pass  # keep the last, complete turn
    cited = cite(encoder, turn.answer, turn.used) if turn.grounded else None
    sources = [{"n": s.number, "file": s.hit.source, "page": s.hit.page, "score": round(s.hit.score, 4),
                "shared": s.hit.shared, "cited": bool(s.cited_by), "text": s.hit.text}
               for s in (cited.sources if cited else [])]
    return {"answer": cited.text if cited else turn.answer, "standalone": turn.standalone,
            "grounded": turn.grounded, "retrieved": [{"file": h.source, "score": round(h.score, 4),
                                                      "text": h.text} for h in turn.hits],
            "sources": sources}


@user_errors
def run_eval(registry, chunk_size, overlap, unit, top_k, progress=gr.Progress()):
    progress(0.1, desc="Embedding the sample corpus and the questions…")
    encoder = registry.sentence_encoder()
    from models.rag.documents import load_folder

    report = evaluate(encoder, load_folder(CORPUS_DIR), load_questions(),
                      splitter_for(registry, chunk_size, overlap, unit), int(top_k))
    s = report.summary()
    text = (f"**hit@{s['k']} = {s['hit@k']:.2f}**, **MRR@{s['k']} = {s['mrr@k']:.2f}** over "
            f"{len(report.rows)} questions, {s['chunks']} chunks of {int(chunk_size)} {unit} "
            f"(document hit@{s['k']} {s['doc_hit@k']:.2f}; {s['answerable']:.0%} of answers fit whole in one chunk).")
    rows = [[r["question"], r["document"], r["rank"] or "miss", r["top source"]] for r in report.rows]
    return text, rows


def end_session(store: DocumentStore, request: gr.Request | None) -> None:
    """When the browser tab closes (app.build_demo registers this with demo.unload): the
    session's collection is deleted at once."""
    if getattr(request, "session_hash", None):
        store.drop_session(request.session_hash)


def build(services, settings) -> None:
    registry, store = services.registry, services.store
    gr.Markdown("Upload documents (or use the bundled sample about transformers), then ask. Your files "
                "stay private to this browser session and are deleted when it ends.")
    with gr.Row():
        with gr.Column(scale=2):
            files = gr.File(label="Documents: PDF, DOCX, HTML, Markdown or text", file_count="multiple",
                            elem_id="rag-files")
            with gr.Accordion("Chunking", open=False):
                chunk_size = gr.Slider(32, 512, value=128, step=16, label="Chunk size")
                overlap = gr.Slider(0, 128, value=16, step=4, label="Overlap")
                unit = gr.Radio(["tokens", "characters"], value="tokens", label="Measured in",
                                info="tokens of the MiniLM tokenizer (it reads at most 256)")
            with gr.Row():
                preview_btn = gr.Button("Preview chunks")
                ingest_btn = gr.Button("Index files", variant="primary", elem_id="rag-ingest")
            status = gr.Markdown(elem_id="rag-status")
            report = gr.Dataframe(headers=REPORT_HEADERS, label="Ingestion report", interactive=False, wrap=True)
            with gr.Accordion("Chunk preview", open=False):
                preview_table = gr.Dataframe(headers=["file", "chunks", "mean size", "max size", "note"],
                                             interactive=False, wrap=True)
                boundaries = gr.HighlightedText(label="Chunk boundaries (first file, first page)",
                                                color_map={"chunk A": "blue", "chunk B": "green",
                                                           "overlap": "orange"}, show_legend=True)
            docs = gr.Dataframe(headers=DOC_HEADERS, label="Your documents", interactive=False)
            with gr.Row():
                doc_pick = gr.Dropdown(choices=[], label="Document", scale=3)
                delete_btn = gr.Button("Delete", scale=1)
            with gr.Row():
                refresh_btn = gr.Button("Refresh list", size="sm")
                reset_btn = gr.Button("Reset session", size="sm", variant="stop")
            doc_note = gr.Markdown()
        with gr.Column(scale=3):
            with gr.Row():  # with "Also answer without retrieval", both answers stand side by side
                chat = gr.Chatbot(label="Conversation (with retrieval, cited)", height=380, elem_id="rag-chat",
                                  placeholder="Ask about your documents or the sample corpus.", scale=3)
                plain = gr.Textbox(label="Same model, no retrieval", interactive=False, lines=15, max_lines=15,
                                   scale=2, visible=False, elem_id="rag-plain")
            question = gr.Textbox(label="Question", lines=1, elem_id="rag-question",
                                  placeholder="How many attention heads does the base transformer use?")
            with gr.Row():
                ask_btn = gr.Button("Ask", variant="primary", elem_id="rag-ask")
                clear_btn = gr.Button("Clear chat")
            with gr.Row():
                top_k = gr.Slider(1, 8, value=4, step=1, label="Top-k chunks")
                threshold = gr.Slider(0.0, 1.0, value=0.3, step=0.05, label="Relevance threshold (cosine)",
                                      info="below it: 'the documents don't contain the answer'")
            with gr.Row():
                use_mmr = gr.Checkbox(label="MMR (diverse chunks)", value=False)
                include_sample = gr.Checkbox(label="Include the sample corpus", value=True)
                compare = gr.Checkbox(label="Also answer without retrieval", value=False)
            standalone = gr.Markdown(elem_id="rag-standalone")
            sources = gr.HTML(label="Sources", elem_id="rag-sources")
            hits = gr.Dataframe(headers=HIT_HEADERS, label="Retrieved chunks", interactive=False, wrap=True)
            with gr.Accordion("Exact prompt sent to the model", open=False):
                prompt_info = gr.Markdown()
                prompt_view = gr.Code(language=None, interactive=False, lines=10, wrap_lines=True)
    with gr.Accordion("Evaluate retrieval on the sample corpus (hit@k, MRR)", open=False):
        gr.Markdown(f"{len(load_questions())} bundled questions, each with the document and phrase that "
                    "answers it. Uses the chunking and top-k above: change the chunk size and run again.")
        eval_btn = gr.Button("Run evaluation")
        eval_summary = gr.Markdown()
        eval_table = gr.Dataframe(headers=["question", "document", "rank", "top source"], interactive=False,
                                  wrap=True)

    # ---- register listeners ----
    def rag_preview(files, chunk_size, overlap, unit):
        return preview(registry, settings, files, chunk_size, overlap, unit)

    def rag_ingest(files, chunk_size, overlap, unit, request: gr.Request, progress=gr.Progress()):
        return ingest_files(registry, store, files, chunk_size, overlap, unit, request, progress)

    def rag_list(request: gr.Request):
        return list_documents(store, request)

    def rag_delete(doc_id, request: gr.Request):
        return delete_document(store, doc_id, request)

    def rag_reset(request: gr.Request):
        return reset_session(store, request)

    def rag_chat(question, history, top_k, threshold, use_mmr, include_sample, compare, request: gr.Request,
                 progress=gr.Progress()):
        yield from ask(registry, store, settings, question, history, top_k, threshold, use_mmr, include_sample,
                       compare, request, progress)

    def rag_ask(question: str, top_k: int = 4, threshold: float = 0.3, use_mmr: bool = False,
                include_sample: bool = True, request: gr.Request = None) -> dict:
        """Answer a question from this session's documents (and the sample corpus), with citations."""
        return ask_api(registry, store, settings, question, top_k, threshold, use_mmr, include_sample, request)

    def rag_eval(chunk_size, overlap, unit, top_k, progress=gr.Progress()):
        return run_eval(registry, chunk_size, overlap, unit, top_k, progress)

    chunking = [files, chunk_size, overlap, unit]
    preview_btn.click(rag_preview, chunking, [preview_table, boundaries], api_name="rag_preview")
    ingest_btn.click(rag_ingest, chunking, [report, status, docs, doc_pick], api_name="rag_ingest",
                     **model_queue(settings))
    refresh_btn.click(rag_list, None, [docs, doc_pick], api_name="rag_list")
    delete_btn.click(rag_delete, [doc_pick], [docs, doc_pick, doc_note], api_name="rag_delete")
    reset_btn.click(rag_reset, None, [docs, doc_pick, doc_note, chat, sources, standalone, plain],
                    api_name="rag_reset")
    ask_inputs = [question, chat, top_k, threshold, use_mmr, include_sample, compare]
    ask_outputs = [chat, question, standalone, hits, sources, prompt_view, prompt_info, plain]
    compare.change(lambda on: gr.update(visible=on), compare, plain, api_name="rag_compare_toggle", queue=False)
    ask_btn.click(rag_chat, ask_inputs, ask_outputs, api_name="rag_chat", **model_queue(settings))
    question.submit(rag_chat, ask_inputs, ask_outputs, api_name="rag_chat_submit", **model_queue(settings))
    clear_btn.click(lambda: ([], "", None, "", ""), None, [chat, standalone, sources, plain, prompt_view],
                    api_name="rag_clear", queue=False)
    eval_btn.click(rag_eval, [chunk_size, overlap, unit, top_k], [eval_summary, eval_table], api_name="rag_eval",
                   **model_queue(settings))
    gr.api(rag_ask, api_name="rag_ask", **model_queue(settings))
