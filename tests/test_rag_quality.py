"""Document chat quality (issue 18): hybrid retrieval, the measured refusal rule, the small reader's
context and decoding, and answers checked against their sources."""

from __future__ import annotations

from dataclasses import replace

import pytest

from models.rag import keyword, quality, reader, refusal, verify
from models.rag.keyword import KeywordIndex, KeywordIndexCache, reciprocal_rank_fusion

HANDBOOK = ("The station has 24 beds in four cabins. Bedding is provided, but visitors must bring their own "
            "towels. Breakfast is served in the Long Hall from 7:30 to 8:30, and the evening meal at 18:30.")


@pytest.fixture(scope="module")
def encoder(registry):
    return registry.sentence_encoder()


# ---- keyword search and fusion -------------------------------------------------------------------
def test_bm25_finds_a_rare_code_and_idf_weights_rare_words():
    index = KeywordIndex(["a", "b", "c"], ["Spare keys for the van hang in locker QJ-4471.",
                                           "The van is parked behind the boathouse.",
                                           "Keys to the boathouse are at reception."])
    assert [h.id for h in index.search("Where is QJ-4471?")] == ["a"]
    assert index.search("zebra") == [] and KeywordIndex([], []).search("anything") == []
    # "van" is in two chunks, "qj"/"4471" in one: the rare words weigh more
    assert index.coverage("Which van is QJ-4471?", "QJ-4471") > index.coverage("Which van is QJ-4471?", "the van")
    assert keyword.content_words("How many towels do I need?") == ["towel", "need"]


def test_a_question_put_as_a_command_is_covered_by_its_answer():
    index = KeywordIndex(["a"], ["Paris is the capital of France."])
    text = "Paris is the capital of France."
    assert index.coverage("Name the capital of France.", text) == 1.0  # "name" is how it asks
    assert index.coverage("What is the capital of France?", text) == 1.0
    assert index.coverage("What name did the ship get?", "The ship sailed.") < 1.0  # elsewhere it counts


def test_reciprocal_rank_fusion_rewards_agreement():
    fused = reciprocal_rank_fusion([["a", "b", "c"], ["c", "a"]])
    assert [i for i, _ in fused] == ["a", "c", "b"]
    assert keyword.fused_share(fused[0][1]) < 1.0
    assert keyword.fused_share(reciprocal_rank_fusion([["x"], ["x"]])[0][1]) == pytest.approx(1.0)


def test_keyword_cache_is_bounded_and_replaces_stale_versions():
    cache = KeywordIndexCache(max_entries=2, max_chunks=10)
    build = lambda n: (lambda: KeywordIndex([str(i) for i in range(n)], ["word"] * n))  # noqa: E731
    first = cache.get("session-a", "v1", build(3))
    assert cache.get("session-a", "v1", build(3)) is first and cache.builds == 1
    cache.get("session-a", "v2", build(3))  # a new fingerprint (an upload): the old version goes
    assert len(cache) == 1 and cache.builds == 2
    cache.get("session-b+sample-x", "v1", build(4))
    cache.get("session-c", "v1", build(5))  # over max_entries and max_chunks: the oldest go
    assert len(cache) == 2
    cache.invalidate("sample-x")
    assert len(cache) == 1


# ---- the reader ----------------------------------------------------------------------------------
def test_the_reader_reads_the_best_sentences_with_their_neighbours(encoder):
    other = "# Safety\n\nLife jackets are compulsory. Swimming is only allowed at Pebble Beach."
    context = reader.build_context(encoder, "What time is the evening meal served?", [other, HANDBOOK],
                                   reader.Reading(sentences=1, window=1))
    assert context.best.text.startswith("Breakfast is served") and context.best.chunk == 1
    assert context.passages == [(2, "Bedding is provided, but visitors must bring their own towels. "
                                    "Breakfast is served in the Long Hall from 7:30 to 8:30, and the evening "
                                    "meal at 18:30.")]
    whole = reader.build_context(encoder, "meal", [other], reader.Reading(sentence_window=False))
    assert whole.passages == [(1, "Safety\n\nLife jackets are compulsory. Swimming is only allowed at Pebble Beach.")]


def test_a_heading_or_an_faq_question_is_quoted_as_the_sentence_after_it(encoder):
    faq = ("**How long can I keep a book?**\nBooks are lent for three weeks.\n\n**Can I renew my loans?**\n"
           "Yes, up to 3 times, online, by phone or at the desk.")
    context = reader.build_context(encoder, "How many times can I renew a loan?", [faq])
    assert context.best.text == "Can I renew my loans?"  # closest to the question, but no answer
    assert context.best_answer.text.startswith("Yes, up to 3 times")
    assert reader.is_label("Membership fees") and reader.is_label("Can I renew my loans?")
    assert not reader.is_label("Books are lent for three weeks.")
    ends = reader.build_context(encoder, "What are the membership fees?", ["The fee is £30.\n\nMembership fees"])
    assert ends.best_answer.text == "The fee is £30."  # a heading that ends its chunk stands for nothing


def test_decoding_stops_at_the_first_complete_answer():
    assert reader.first_answer("The meal is at 18:30. The meal is at 18:30. The") == ("The meal is at 18:30.", True)
    assert reader.first_answer("Dr. Ines Varga runs it") == ("Dr. Ines Varga runs it", False)
    assert reader.first_answer("1. Pebble Beach\n2. The lake") == ("1. Pebble Beach", True)
    assert reader.first_answer("It costs £2.50 per") == ("It costs £2.50 per", False)
    assert reader.tidy("The passage states: **Pebble Beach**") == "Pebble Beach"
    assert reader.tidy("1. towels") == "Towels"
    assert reader.model_refused("The passage does not mention a Wi-Fi password.")
    assert reader.model_refused("I don't know.") and not reader.model_refused("At 18:30.")
    assert reader.denies("The library does not have a café.") and reader.denies("There is no café.")
    assert not reader.denies("The library has a café. Notably, it opens at 9.")


# ---- answers checked against their sources -------------------------------------------------------
def test_a_number_absent_from_the_sources_is_flagged(encoder):
    question = "How many beds does the station have?"
    context = reader.build_context(encoder, question, [HANDBOOK])
    good = verify.verify(encoder, "The station has 24 beds.", context)
    assert good.supported and good.claims[0].cites == [1]
    bad = verify.verify(encoder, "The station has 42 beds.", context)
    assert not bad.supported and bad.claims[0].missing == ["42"]
    assert "24 beds" in bad.claims[0].evidence.text  # what is quoted instead
    unit = verify.verify(encoder, "The evening meal is at 18:30 hours.", context)
    assert unit.supported  # "hours" after a clock time is no unit mismatch
    assert verify.missing_facts("It takes 58 hours.", "It bakes in 58 minutes.") == ["58 hour"]
    assert verify.missing_facts("The warden is John Smith.", HANDBOOK) == ["john", "smith"]
    assert verify.missing_facts("Four cabins, £4310.", "4 cabins cost £4,310") == []
    assert verify.missing_facts("Call 161 555 0199 on Sundays.", "call 0161 555 0199 on Sunday") == []


def test_figures_and_names_the_model_read_nowhere_are_invented():
    assert verify.invented_facts("The Wi-Fi password is 123456.", HANDBOOK) == ["123456", "wi-fi"]
    assert verify.invented_facts("The Boathouse was built in 1992. It has 24 beds.", HANDBOOK) == ["1992", "boathouse"]
    assert verify.invented_facts("The station has 24 beds, bedding included.", HANDBOOK) == []
    assert verify.invented_facts("Take the one that is free.", HANDBOOK) == []  # a number word is no figure
    assert verify.invented_facts("Error E03 means the lid is open.", "E01 means it is too hot.") == ["e03"]


# ---- the refusal rule ----------------------------------------------------------------------------
def test_the_refusal_rule_refuses_quotes_and_answers():
    rule = refusal.RefusalRule(min_sentence=0.3, min_coverage=0.3, quote_sentence=0.6, quote_coverage=0.8)
    weak = refusal.Signals(best_sentence=0.2, coverage=1.0)
    assert rule.before_reading(weak).refused and "0.20" in rule.before_reading(weak).reason
    assert rule.before_reading(refusal.Signals(best_sentence=0.5, coverage=0.1)).refused
    close = refusal.Signals(best_sentence=0.7, coverage=0.9)
    assert rule.before_reading(close) is None
    assert rule.after_reading(refusal.Signals(0.5, None, 0.9, 0.7, False, True)).action == "answer"
    assert rule.after_reading(refusal.Signals(0.5, None, 0.9, 0.7, True, None)).action == "quote"
    assert rule.after_reading(refusal.Signals(0.5, None, 0.5, 0.5, False, False)).action == "refuse"
    assert "0.30" in rule.describe()


def test_an_unfounded_answer_is_refused_unless_the_best_sentence_is_close():
    rule = refusal.RefusalRule(min_sentence=0.0, min_coverage=0.0, unfounded_sentence=0.6)
    S = refusal.Signals
    made_up = rule.after_reading(S(best_sentence=0.46, coverage=0.5, model_refused=False, supported=False,
                                   invented=("1992",), denies=False))
    assert made_up.refused and "1992" in made_up.reason and "found nowhere" in made_up.reason
    denial = rule.after_reading(S(best_sentence=0.53, coverage=0.4, model_refused=False, supported=False,
                                  invented=(), denies=True))
    assert denial.refused and "denial" in denial.reason
    close = S(best_sentence=0.64, coverage=0.5, model_refused=False, supported=False, invented=("1200",))
    assert rule.after_reading(close).action == "quote"  # the answer is probably there: quoted
    # a supported answer is never unfounded, whatever it says
    assert rule.after_reading(S(best_sentence=0.4, model_refused=False, supported=True, on_topic=True,
                                denies=True)).action == "answer"
    assert refusal.RefusalRule(unfounded_sentence=0.0).after_reading(
        replace(close, best_sentence=0.1)).action == "quote"  # 0 switches the step off
    assert "0.60" in rule.describe()


def test_calibration_picks_the_rule_with_the_most_right_outcomes():
    S = refusal.Signals
    records = [(S(best_sentence=0.7, coverage=1.0, model_refused=False, supported=True), True, True, True),
               (S(best_sentence=0.6, coverage=0.9, model_refused=True), True, False, True),
               (S(best_sentence=0.5, coverage=0.2, model_refused=False, supported=True), False, False, False),
               (S(best_sentence=0.2, coverage=0.5, model_refused=False, supported=False), False, False, False),
               (S(best_sentence=0.5, coverage=0.9, model_refused=False, supported=False, invented=("1992",)),
                False, False, False),
               (S(best_sentence=0.7, coverage=0.9, model_refused=False, supported=False, invented=("1200",)),
                True, False, True)]
    rule, figures = refusal.calibrate(records)
    assert figures["right"] == 6 and figures["refusal_precision"] == 1.0 and figures["refusal_recall"] == 1.0
    assert 0.5 < rule.unfounded_sentence <= 0.7  # the made-up 1992 refused, the close 1200 quoted
    assert rule.after_reading(records[1][0]).action == "quote"
    # the vectorised search agrees with the rule applied one record at a time
    assert sum(refusal.outcome(rule, *r)[1] for r in records) == figures["right"]


# ---- the evaluation set and its scoring ----------------------------------------------------------
def test_the_bundled_eval_set_is_large_enough_and_consistent():
    files, questions = quality.load_set()
    kinds = {q.kind for q in questions}
    assert len(files) >= 4 and {"handbook", "product manual", "meeting minutes", "FAQ"} <= kinds
    assert len(questions) >= 60 and sum(not q.answerable for q in questions) >= 15
    for split in quality.SPLITS:
        assert {q.split for q in quality.load_set(split)[1]} == {split}
    texts = {name: data.decode() for name, data in files}
    for q in questions:
        if q.answerable:
            assert quality.contains_answer(q.evidence, q.answers), q
            assert quality._norm(q.evidence) in quality._norm(texts[q.document]), q


def test_answers_are_scored_by_whole_words_and_refusals_count():
    q = quality.QualityQuestion("How many beds?", "h.md", ("24",), "24 beds", "heldout", "handbook")
    none = quality.QualityQuestion("Wi-Fi password?", "h.md", (), "", "heldout", "handbook")
    no = "The documents don't contain the answer to this question."
    hit = {"answer": "It has 24 beds. [1]", "retrieved": [{"file": "h.md", "text": "We have 24 beds."}],
           "supported": True}
    assert quality.score(q, hit, no).right and quality.score(q, hit, no).rank == 1
    assert not quality.score(q, {**hit, "answer": "It has 124 beds."}, no).right
    assert quality.score(none, {**hit, "answer": no}, no).right
    assert quality.score(none, {**hit, "answer": "I don't know."}, no).refused
    summary = quality.summarize([quality.score(q, hit, no), quality.score(none, hit, no)], k=4)
    assert summary["answer_accuracy"] == 1.0 and summary["refusal_recall"] == 0.0
    assert summary["unanswerable_shown_supported"] == 1


# ---- hybrid retrieval in the store ----------------------------------------------------------------
STORAGE_ITEMS = ["spare van keys", "first-aid refills", "printer toner", "winter tyres", "the projector",
                 "old invoices", "the drone batteries", "guest towels", "paint and brushes", "camping stoves",
                 "the label printer", "fire blankets"]
CODES = ["KT-2209", "MV-5130", "QJ-4471", "RB-7782", "ZL-3316", "HX-9054", "PC-1187", "WN-6623", "DF-4490",
         "SG-8815", "TY-0372", "LB-5568"]


@pytest.fixture(scope="module")
def hybrid_store(settings, registry, tmp_path_factory, encoder):
    """A store of its own with twelve near-identical chunks that differ by a code and an item."""
    from dataclasses import replace

    from models.rag.chunking import make_splitter
    from models.rag.ingest import ingest
    from models.rag.store import DocumentStore

    store = DocumentStore(replace(settings, data_dir=tmp_path_factory.mktemp("hybrid")), registry.sentence_encoder)
    pairs = enumerate(zip(CODES, STORAGE_ITEMS, strict=True))
    text = "\n\n".join(f"Storage room notes, shelf {i + 1}.\n\nCabinet {code} in the storage room holds {item}; "
                       "ask the office for the key." for i, (code, item) in pairs)
    splitter = make_splitter(32, 0, "tokens", encoder.tokenizer)
    report = ingest(store, "cabinets", [("storage.md", text.encode())], splitter)
    assert report.chunks_added == 12
    return store


def test_a_keyword_only_fact_is_found_by_the_hybrid_search(hybrid_store):
    question = "What does cabinet QJ-4471 hold?"
    dense = hybrid_store.search("cabinets", question, 12, include_sample=False)
    dense_rank = next(r for r, h in enumerate(dense, 1) if "QJ-4471" in h.text)
    assert dense_rank > 4  # the vectors barely see the code: it is not among the top 4
    hybrid = hybrid_store.search("cabinets", question, 4, include_sample=False, hybrid=True)
    assert "QJ-4471" in hybrid[0].text
    assert hybrid[0].keyword_rank == 1 and hybrid[0].dense_rank == dense_rank and 0 < hybrid[0].fused <= 1
    assert all(h.score == pytest.approx(d.score, abs=1e-4) for h in hybrid for d in dense if d.id == h.id)
    assert [h.keyword_rank for h in dense] == [None] * len(dense)  # dense-only search carries no keyword ranks


def test_the_keyword_index_is_cached_per_session_and_rebuilt_after_a_change(hybrid_store, encoder):
    from models.rag.chunking import make_splitter
    from models.rag.ingest import ingest

    hybrid_store.search("cabinets", "cabinet QJ-4471", 2, include_sample=False, hybrid=True)
    builds = hybrid_store.keywords.builds
    hybrid_store.search("cabinets", "Which cabinet holds the winter tyres?", 2, include_sample=False, hybrid=True)
    assert hybrid_store.keywords.builds == builds  # unchanged chunks: the cached index
    splitter = make_splitter(32, 0, "tokens", encoder.tokenizer)
    ingest(hybrid_store, "cabinets", [("extra.txt", b"Cabinet XR-9001 holds the snow chains.")], splitter)
    found = hybrid_store.search("cabinets", "What does cabinet XR-9001 hold?", 1, include_sample=False, hybrid=True)
    assert "XR-9001" in found[0].text and hybrid_store.keywords.builds == builds + 1
    doc_id = next(d.doc_id for d in hybrid_store.documents("cabinets") if d.source == "extra.txt")
    hybrid_store.delete_document("cabinets", doc_id)
    after = hybrid_store.search("cabinets", "What does cabinet XR-9001 hold?", 4, include_sample=False, hybrid=True)
    assert all("XR-9001" not in h.text for h in after) and hybrid_store.keywords.builds == builds + 2
    # another session never sees these chunks, by keyword either
    assert hybrid_store.search("someone-else", "cabinet QJ-4471", 4, include_sample=False, hybrid=True) == []


# ---- through the app: two clients, two keyword indexes -------------------------------------------
def test_two_clients_never_share_a_keyword_index(app_url, tmp_path):
    from gradio_client import Client, handle_file

    alice, bob = Client(app_url, verbose=False), Client(app_url, verbose=False)
    cabinets = tmp_path / "cabinets.md"
    cabinets.write_text("\n\n".join(f"Cabinet {code} in the storage room holds {item}."
                                    for code, item in zip(CODES, STORAGE_ITEMS, strict=True)))
    garden = tmp_path / "garden.md"
    garden.write_text("Shed notes.\n\nThe green shed keeps the lawn mower, the rakes and the watering cans.")
    alice.predict([handle_file(str(cabinets))], 32, 0, "tokens", api_name="/rag_ingest")
    bob.predict([handle_file(str(garden))], 32, 0, "tokens", api_name="/rag_ingest")
    question = "What does cabinet QJ-4471 hold?"
    theirs = bob.predict(question, 4, 0.15, False, False, api_name="/rag_ask")
    assert theirs["retrieved"] and all("Cabinet" not in h["text"] for h in theirs["retrieved"])
    assert all(h["keyword_rank"] is None for h in theirs["retrieved"])  # no word of the question in Bob's chunks
    assert theirs["refused"] and theirs["answer"] == "The documents don't contain the answer to this question."
    mine = alice.predict(question, 4, 0.15, False, False, api_name="/rag_ask")
    top = mine["retrieved"][0]
    assert "QJ-4471" in top["text"] and top["keyword_rank"] == 1 and top["dense_rank"] >= 1
    assert {"supported", "signals", "decision", "claims"} <= set(mine)


def test_the_sources_panel_marks_supported_and_unsupported_claims(encoder):
    from models.rag.grounded import GroundedTurn, compose
    from models.rag.hits import Hit
    from models.rag.refusal import DEFAULT_RULE, Decision, Signals
    from tabs.rag_views import checks_html, turn_sources_html

    hit = Hit("h1", HANDBOOK + " <script>x</script>", "handbook.md", None, 0.6, False)
    context = reader.build_context(encoder, "How many beds does the station have?", [hit.text])
    checked = verify.verify(encoder, "The station has 42 beds. It has four cabins.", context)
    assert [c.supported for c in checked.claims] == [False, True]
    decision = Decision("quote", "the model's answer is not supported")
    text, quote = compose(decision, "", checked, context)
    assert text.startswith("~~The station has 42 beds.~~ (unsupported: not in the sources: 42)")
    assert "It has four cabins. [1]" in text
    assert text.endswith("“The station has 24 beds in four cabins.” [1]")
    turn = GroundedTurn(question="How many beds?", context=context, verification=checked, decision=decision,
                        quote=quote, signals=Signals(0.6, None, 1.0, 0.8, False, False, True), rule=DEFAULT_RULE,
                        answer=text, used=[hit], done=True)
    html = checks_html(turn)
    assert "✗ unsupported" in html and "✓ supported" in html and "rag-unsupported" in html
    assert "Refusal signals and rule" in html and DEFAULT_RULE.describe()[:40] in html
    assert "<script>" not in turn_sources_html(turn)


# ---- the whole turn on a document of the eval set ------------------------------------------------
def test_an_unanswerable_in_domain_question_is_refused_and_an_answerable_one_answered(settings, registry, lm,
                                                                                         encoder, tmp_path_factory):
    """The field station's handbook: it never gives a Wi-Fi password (the question's topic is the
    handbook's, its chunks are retrieved), and it does give the number of beds."""
    from dataclasses import replace

    from models.rag.chain import NO_ANSWER
    from models.rag.chunking import make_splitter
    from models.rag.ingest import ingest
    from models.rag.store import DocumentStore
    from models.rag.turn import Retrieval, ask, final, summary

    store = DocumentStore(replace(settings, data_dir=tmp_path_factory.mktemp("orrin")), registry.sentence_encoder)
    handbook = [(n, d) for n, d in quality.load_set("calibration")[0] if n == "lake_orrin_handbook.md"]
    ingest(store, "orrin", handbook, make_splitter(128, 16, "tokens", encoder.tokenizer))
    retrieval = Retrieval(include_sample=False)

    refused = summary(final(ask(store, "orrin", lm, encoder, "What is the Wi-Fi password at the field station?",
                                [], retrieval)))
    assert refused["retrieved"] and refused["retrieved"][0]["file"] == "lake_orrin_handbook.md"  # in-domain
    assert refused["retrieved"][0]["score"] >= retrieval.threshold  # not the cosine threshold's refusal
    assert refused["refused"] and refused["answer"] == NO_ANSWER and refused["decision"]["action"] == "refuse"
    built = summary(final(ask(store, "orrin", lm, encoder, "In which year was the Boathouse built?", [], retrieval)))
    assert built["refused"] and built["answer"] == NO_ANSWER  # the handbook never says; the model makes a year up

    answered = summary(final(ask(store, "orrin", lm, encoder, "How many beds does the station have?", [], retrieval)))
    assert not answered["refused"] and answered["supported"] and "24" in answered["answer"]
