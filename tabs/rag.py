"""Chat with your documents: retrieval-augmented generation, one visible step at a time.

What it teaches: documents are parsed, split into chunks (see the boundaries), embedded with
MiniLM and stored in a vector database beside a BM25 keyword index; a question is rewritten to
stand alone, chunks are retrieved by both (each ranking shown) and fused, the small model reads
the sentences closest to the question, and its answer is checked against them: each sentence
must be supported, its names and numbers found in the cited chunk, or it is struck through and
the best sentence quoted. A refusal rule calibrated on a bundled set says when the documents
don't hold the answer (its signals are shown); a side-by-side shows the model without
retrieval; an evaluation measures each piece. Each browser session has its own private
collection, removed when it ends.

The handlers below are plain functions over the app's `Services`; the ones that update several
components return {component: value} for just those (the others keep their value).
"""

from __future__ import annotations

from dataclasses import dataclass

import gradio as gr

from models.chat import count_tokens
from models.chat_history import cap_history
from models.generation.service import served
from models.lessons.warmup import Need
from models.rag import turn as rag_turn
from models.rag.chain import answer_without_retrieval
from models.rag.documents import load_folder
from models.rag.evaluation import CORPUS_DIR, evaluate, load_questions
from models.rag.grounded import Answering
from models.rag.ingest import ensure_sample, ingest
from models.rag.quality import ablation, evaluate_answers, load_set, sample_questions
from models.rag.turn import TOP_K, Retrieval
from models.time_limit import within
from tabs import rag_documents as documents
from tabs import rag_views as views
from tabs.common import Services, generation_queue, model_queue, time_limit_note, user_errors
from tabs.handles import Action, Call, TabHandle

# A question shares the model's context budget with the retrieved chunks; ~2,000 characters is
# ~500 tokens, which leaves room for them.
MAX_QUESTION_CHARS = 2000


@dataclass(frozen=True, eq=False)
class Outputs:
    """The components the handlers fill: a handler returns {outputs.<name>: value, ...}."""

    report: gr.Dataframe
    status: gr.Markdown
    docs: gr.Dataframe
    doc_pick: gr.Dropdown
    doc_note: gr.Markdown
    chat: gr.Chatbot
    question: gr.Textbox
    standalone: gr.Markdown
    hits: gr.Dataframe
    sources: gr.HTML
    prompt_view: gr.Code
    prompt_info: gr.Markdown
    plain: gr.Textbox


def check_question_length(services: Services, question: str) -> None:
    """Refuse a question too long to leave room for the chunks: in characters first (cheap), then
    in the chat model's tokens (2,000 characters of emoji are 8,000 tokens)."""
    if len(question) > MAX_QUESTION_CHARS:
        raise gr.Error(f"The question has {len(question):,} characters; ask in at most {MAX_QUESTION_CHARS:,} "
                       "so the retrieved chunks still fit beside it.")
    n_tokens = count_tokens(services.registry.chat_model(), question)
    if n_tokens > rag_turn.MAX_QUESTION_TOKENS:
        raise gr.Error(f"The question is {n_tokens:,} tokens long; ask in at most {rag_turn.MAX_QUESTION_TOKENS} "
                       "so the retrieved chunks still fit beside it.")


def question_turns(services: Services, session: str, question: str, history: list[dict], retrieval: Retrieval):
    """The one question turn (rewrite -> retrieve -> answer -> cite) both the chat and rag_ask run."""
    registry = services.registry
    lm = served(registry.chat_model(), services.generation)  # its answers join the shared batch
    return rag_turn.ask(services.store, session, lm, registry.sentence_encoder(), question,
                        history, retrieval, context_tokens=services.settings.context_tokens)


# ---- handlers (plain functions: unit-testable with a fake request) ----------------------------
def clear_chat(out: Outputs) -> dict:
    return {out.chat: [], out.standalone: "", out.sources: None, out.plain: "", out.prompt_view: ""}


@user_errors
def ask(services: Services, out: Outputs, question, history, top_k, threshold, use_mmr, include_sample, compare,
        request: gr.Request, progress=gr.Progress(), hybrid=True):
    """Stream a question turn into the chat, the retrieval table and the prompt view; the sources
    panel once it is cited; then, if asked, the same model's answer without retrieval."""
    session = documents.session_of(request)
    question = (question or "").strip()
    if not question:
        gr.Warning("Type a question first.")
        yield gr.skip()
        return
    check_question_length(services, question)  # before anything is shown: the question stays in its box
    retrieval = Retrieval.clamped(top_k, threshold, use_mmr, include_sample, hybrid)
    if retrieval.include_sample:
        progress(0.05, desc="Preparing the sample corpus (first use only)…")
    history = cap_history(history)  # client-sent: bounded before any tokenizer or regex reads it
    chat = history + [{"role": "user", "content": question}, {"role": "assistant", "content": "…"}]
    context_tokens = services.settings.context_tokens
    for turn in question_turns(services, session, question, history, retrieval):
        chat[-1] = {"role": "assistant", "content": turn.text or "…"}
        update = {out.chat: chat, out.question: "", out.standalone: views.standalone_note(turn),
                  out.hits: views.hit_rows(turn, retrieval.threshold),
                  out.prompt_view: turn.prompt.text if turn.prompt else "",
                  out.prompt_info: views.prompt_note(turn, context_tokens, Answering().reading.max_new_tokens)}
        if turn.done:
            update[out.sources] = views.turn_sources_html(turn)
        yield update
    if compare:
        for plain in answer_without_retrieval(served(services.registry.chat_model(), services.generation), question,
                                              max_new_tokens=rag_turn.MAX_NEW_TOKENS,
                                              context_tokens=context_tokens):
            yield {out.plain: plain}


@user_errors
def ask_api(services: Services, question: str, top_k: int, threshold: float, use_mmr: bool, include_sample: bool,
            request: gr.Request, hybrid: bool = True) -> dict:
    """rag_ask: question -> {answer (with [n] markers), standalone, grounded, retrieved, sources, supported,
    refused, claims, signals, decision}."""
    session = documents.session_of(request)
    question = (question or "").strip()
    if not question:
        raise gr.Error("The question is empty.")
    check_question_length(services, question)
    retrieval = Retrieval.clamped(top_k, threshold, use_mmr, include_sample, hybrid)
    turns = within(question_turns(services, session, question, [], retrieval), services.settings.job_time_limit_s)
    return rag_turn.summary(rag_turn.final(turns))


@user_errors
def run_eval(registry, chunk_size, overlap, unit, top_k, progress=gr.Progress()):
    progress(0.1, desc="Embedding the sample corpus and the questions…")
    report = evaluate(registry.sentence_encoder(), load_folder(CORPUS_DIR), load_questions(),
                      documents.splitter_for(registry, chunk_size, overlap, unit), int(top_k))
    return views.eval_summary(report, int(chunk_size), unit), views.eval_rows(report)


@user_errors
def run_answer_eval(services: Services, chunk_size, overlap, unit, top_k, threshold, use_mmr, include_sample, hybrid,
                    per_document, with_ablation, request: gr.Request, progress=gr.Progress()):
    """Answer quality on the held-out set for the current settings (and each new piece off): the
    held-out documents go into a private evaluation session, deleted afterwards."""
    session = documents.session_of(request) + "-answer-eval"
    registry = services.registry
    encoder = registry.sentence_encoder()
    files, questions = load_set("heldout")
    questions = sample_questions(questions, min(max(int(per_document), 1), 16))
    retrieval = Retrieval.clamped(top_k, threshold, use_mmr, include_sample, hybrid)
    rows = ablation(retrieval, Answering())
    rows = rows if with_ablation else {"current settings": rows["current settings"]}
    lm = served(registry.chat_model(), services.generation)
    try:
        progress(0.02, desc="Indexing the held-out documents…")
        ingest(services.store, session, files, documents.splitter_for(registry, chunk_size, overlap, unit))
        names = list(rows)

        def on_question(name: str, i: int, n: int) -> None:
            done = names.index(name) * n + i
            progress(done / (len(names) * n), desc=f"{name}: question {i + 1}/{n}")

        results = evaluate_answers(services.store, session, lm, encoder, questions, rows,
                                   context_tokens=services.settings.context_tokens, k=retrieval.top_k,
                                   progress=on_question)
    finally:
        services.store.drop_session(session)
    return views.answer_eval_summary(results, len(questions), retrieval.top_k), \
        views.answer_eval_rows(results, retrieval.top_k)


def build(services: Services, settings) -> TabHandle:
    registry, store = services.registry, services.store
    gr.Markdown("Upload documents (or use the bundled sample about transformers), then ask. Your files "
                "stay private to this browser session and are deleted once it has ended (closed for "
                f"{settings.session_grace_s / 60:g} minutes: a dropped connection loses nothing).")
    with gr.Row():
        with gr.Column(scale=2):
            files = gr.File(label="Documents: PDF, DOCX, HTML, Markdown or text", file_count="multiple",
                            file_types=documents.UPLOAD_TYPES, elem_id="rag-files")
            with gr.Accordion("Chunking", open=False) as chunking_knobs:
                chunk_size = gr.Slider(32, 512, value=128, step=16, label="Chunk size")
                overlap = gr.Slider(0, 128, value=16, step=4, label="Overlap")
                unit = gr.Radio(["tokens", "characters"], value="tokens", label="Measured in",
                                info="tokens of the MiniLM tokenizer (it reads at most 256)")
            with gr.Row():
                preview_btn = gr.Button("Preview chunks")
                ingest_btn = gr.Button("Index files", variant="primary", elem_id="rag-ingest")
            status = gr.Markdown(elem_id="rag-status")
            report = gr.Dataframe(headers=views.REPORT_HEADERS, label="Ingestion report", interactive=False, wrap=True)
            with gr.Accordion("Chunk preview", open=False) as chunk_preview:
                preview_table = gr.Dataframe(headers=views.PREVIEW_HEADERS,
                                             interactive=False, wrap=True)
                boundaries = gr.HighlightedText(label="Chunk boundaries (first file, first page)",
                                                color_map={"chunk A": "blue", "chunk B": "green",
                                                           "overlap": "orange"}, show_legend=True)
            docs = gr.Dataframe(headers=views.DOC_HEADERS, label="Your documents", interactive=False)
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
                stop_btn = gr.Button("Stop", variant="stop", elem_id="rag-stop")
                clear_btn = gr.Button("Clear chat")
            with gr.Row():
                top_k = gr.Slider(*TOP_K, value=4, step=1, label="Top-k chunks")
                threshold = gr.Slider(0.0, 1.0, value=rag_turn.THRESHOLD, step=0.05,
                                      label="Relevance threshold (cosine)",
                                      info="chunks under it are never read; the refusal rule decides the rest")
            with gr.Row():
                hybrid = gr.Checkbox(label="Hybrid search (BM25 + vectors)", value=True, elem_id="rag-hybrid")
                use_mmr = gr.Checkbox(label="MMR (diverse chunks)", value=False)
                include_sample = gr.Checkbox(label="Include the sample corpus", value=True)
                compare = gr.Checkbox(label="Also answer without retrieval", value=False)
            standalone = gr.Markdown(elem_id="rag-standalone")
            sources = gr.HTML(label="Sources", elem_id="rag-sources")
            hits = gr.Dataframe(headers=views.HIT_HEADERS, label="Retrieved chunks", interactive=False, wrap=True)
            with gr.Accordion("Exact prompt sent to the model", open=False):
                prompt_info = gr.Markdown()
                prompt_view = gr.Code(language=None, interactive=False, lines=10, wrap_lines=True)
    with gr.Accordion("Evaluate retrieval on the sample corpus (hit@k, MRR)", open=False):
        gr.Markdown(f"{len(load_questions())} bundled questions, each with the document and phrase that "
                    "answers it. Uses the chunking and top-k above: change the chunk size and run again.")
        eval_btn = gr.Button("Run evaluation")
        eval_summary = gr.Markdown(elem_id="rag-eval")
        eval_table = gr.Dataframe(headers=views.EVAL_HEADERS, interactive=False, wrap=True)
    with gr.Accordion("Evaluate answers on the held-out set (accuracy, refusals, unsupported claims)", open=False):
        gr.Markdown("Four short documents the defaults were never tuned on (a handbook, a product manual, "
                    "meeting minutes, a FAQ), with questions they answer and questions they don't. Uses the "
                    "settings above; the ablation repeats the run with each new piece turned off. The model "
                    "answers every question: a few minutes per row.")
        with gr.Row():
            per_document = gr.Slider(1, 16, value=4, step=1, label="Questions per document")
            with_ablation = gr.Checkbox(label="With the ablation (each piece off)", value=False)
        answer_eval_btn = gr.Button("Evaluate answers")
        answer_eval_summary = gr.Markdown(elem_id="rag-answer-eval")
        answer_eval_table = gr.Dataframe(headers=views.ANSWER_EVAL_HEADERS, interactive=False, wrap=True)

    out = Outputs(report=report, status=status, docs=docs, doc_pick=doc_pick, doc_note=doc_note, chat=chat,
                  question=question, standalone=standalone, hits=hits, sources=sources, prompt_view=prompt_view,
                  prompt_info=prompt_info, plain=plain)

    # ---- register listeners ----
    def rag_preview(files, chunk_size, overlap, unit):
        return documents.preview(services, files, chunk_size, overlap, unit)

    def rag_ingest(files, chunk_size, overlap, unit, request: gr.Request, progress=gr.Progress()):
        return documents.ingest_files(services, out, files, chunk_size, overlap, unit, request, progress)

    def rag_list(request: gr.Request):
        return documents.list_documents(store, out, request)

    def rag_delete(doc_id, request: gr.Request):
        return documents.delete_document(store, out, doc_id, request)

    def rag_reset(request: gr.Request):
        return documents.reset_session(store, out, request)

    def rag_chat(question, history, top_k, threshold, use_mmr, include_sample, compare, hybrid, request: gr.Request,
                 progress=gr.Progress()):
        yield from within(ask(services, out, question, history, top_k, threshold, use_mmr, include_sample, compare,
                              request, progress, hybrid),
                          settings.job_time_limit_s, on_timeout=lambda: gr.Warning(time_limit_note(settings)))

    def rag_ask(question: str, top_k: int = 4, threshold: float = rag_turn.THRESHOLD, use_mmr: bool = False,
                include_sample: bool = True, request: gr.Request = None, hybrid: bool = True) -> dict:
        """Answer a question from this session's documents (and the sample corpus), with citations, the
        answer's check against the sources (supported, claims) and the refusal rule's signals."""
        return ask_api(services, question, top_k, threshold, use_mmr, include_sample, request, hybrid)

    def rag_eval_answers(chunk_size, overlap, unit, top_k, threshold, use_mmr, include_sample, hybrid, per_document,
                         with_ablation, request: gr.Request, progress=gr.Progress()):
        return run_answer_eval(services, chunk_size, overlap, unit, top_k, threshold, use_mmr, include_sample,
                               hybrid, per_document, with_ablation, request, progress)

    def rag_eval(chunk_size, overlap, unit, top_k, progress=gr.Progress()):
        return run_eval(registry, chunk_size, overlap, unit, top_k, progress)

    def rag_clear():
        return clear_chat(out)

    chunking = [files, chunk_size, overlap, unit]
    # Public API: rag_ingest, rag_ask and the two evaluations (the README's API section); the chat's own
    # handlers are undocumented (gradio_client can still drive them), UI plumbing is private.
    hidden = {"api_visibility": "undocumented"}
    preview_btn.click(rag_preview, chunking, [preview_table, boundaries], api_name="rag_preview", **hidden,
                      **model_queue(settings))  # it parses, tokenizes and splits: model work
    ingest_btn.click(rag_ingest, chunking, [report, status, docs, doc_pick], api_name="rag_ingest",
                     **model_queue(settings))
    refresh_btn.click(rag_list, None, [docs, doc_pick], api_name="rag_list", **hidden)
    delete_btn.click(rag_delete, [doc_pick], [docs, doc_pick, doc_note], api_name="rag_delete", **hidden)
    reset_btn.click(rag_reset, None, [docs, doc_pick, doc_note, chat, sources, standalone, plain],
                    api_name="rag_reset", **hidden)
    ask_inputs = [question, chat, top_k, threshold, use_mmr, include_sample, compare, hybrid]
    ask_outputs = [chat, question, standalone, hits, sources, prompt_view, prompt_info, plain]
    compare.change(lambda on: gr.update(visible=on), compare, plain, api_name="rag_compare_toggle",
                   api_visibility="private", queue=False)
    ask_call = Call(rag_chat, ask_inputs, ask_outputs, generation_queue(settings))
    clear_call = Call(rag_clear, None, [chat, standalone, sources, plain, prompt_view], {"queue": False})
    eval_call = Call(rag_eval, [chunk_size, overlap, unit, top_k], [eval_summary, eval_table], model_queue(settings))
    ask_event = gr.on([ask_btn.click, question.submit], **ask_call.kwargs(), api_name="rag_chat", **hidden)
    # Stop closes the running answer: its generation ends at the next token (models/chat.stream_answer).
    stop_btn.click(None, None, None, cancels=[ask_event], api_name="rag_stop")  # no function: private
    clear_btn.click(**clear_call.kwargs(), api_name="rag_clear", api_visibility="private")
    eval_btn.click(**eval_call.kwargs(), api_name="rag_eval")
    answer_eval_btn.click(rag_eval_answers, [chunk_size, overlap, unit, top_k, threshold, use_mmr, include_sample,
                                             hybrid, per_document, with_ablation],
                          [answer_eval_summary, answer_eval_table], api_name="rag_eval_answers",
                          **model_queue(settings))
    gr.api(rag_ask, api_name="rag_ask", **generation_queue(settings))
    components = {"question": question, "top_k": top_k, "threshold": threshold, "use_mmr": use_mmr, "hybrid": hybrid,
                  "include_sample": include_sample, "compare": compare, "chunk_size": chunk_size, "overlap": overlap,
                  "unit": unit}
    actions = {"ask": Action((ask_call,), "Ask", ("chat", "encoder", "rag-sample"), "rag-chat"),
               "clear": Action((clear_call,), "Clear chat", (), "rag-chat"),
               "eval": Action((eval_call,), "Run evaluation", ("encoder",), "rag-eval")}
    sample = Need("rag-sample", "the sample-corpus index",
                  lambda: ensure_sample(store, CORPUS_DIR, registry.sentence_encoder().tokenizer),
                  lambda: store.sample_name is not None)
    return TabHandle("rag", components, actions, advanced=[chunking_knobs, chunk_preview], needs=[sample])
