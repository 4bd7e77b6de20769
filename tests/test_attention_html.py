"""The bertviz views as an offline, sandboxed iframe: hostile tokens stay text, nothing is
fetched from another host, and a 64-token page stays small; the head grid and the heatmap
PNG drawn from the same hostile input."""

from __future__ import annotations

import html
import json
import re
from html.parser import HTMLParser

import numpy as np
import pytest

from models.attention.capture import encoder_attention
from models.attention.head_stats import head_stats
from tabs.attention_views import head_grid_html, heatmap_png
from tabs.bertviz_views import json_for_script, sandboxed_iframe, views_document

HOSTILE_A = "<script>alert(1)</script> is a tag"
HOSTILE_B = '"><img src=x onerror=alert(2)> and </script><b>bold</b>'
# Every http(s) string that may remain in the page: XML namespace names (identifiers the
# browser never fetches) and links in the vendored files' licence/source comments.
NON_FETCHED = {
    "http://www.w3.org/1999/xhtml", "http://www.w3.org/1999/xlink", "http://www.w3.org/2000/svg",
    "http://www.w3.org/2000/xmlns/", "http://www.w3.org/XML/1998/namespace", "https://d3js.org",
    "https://github.com/requirejs/requirejs/blob/master/LICENSE", "http://dev.jquery.com/ticket/2709",
    "https://github.com/requirejs/requirejs/issues/187", "https://github.com/requirejs/requirejs/issues/273",
    "https://connect.microsoft.com/IE/feedback/details/648057/script-onload-event-is-not-fired-immediately-after-script-execution",
    "https://webkit.org/b/153317", "https://requirejs.org/docs/errors.html#",
    "https://github.com/tensorflow/tensor2tensor/blob/master/tensor2tensor/visualization/attention.js",
}


class Tags(HTMLParser):
    """Collects start tags with their attributes, and the text of every <script>."""

    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.tags: list[tuple[str, dict]] = []
        self.scripts: list[str] = []
        self._in_script = False

    def handle_starttag(self, tag, attrs):
        self.tags.append((tag, dict(attrs)))
        self._in_script = tag == "script"
        if self._in_script:
            self.scripts.append("")

    def handle_endtag(self, tag):
        self._in_script = False if tag == "script" else self._in_script

    def handle_data(self, data):
        if self._in_script:
            self.scripts[-1] += data


def parse(markup: str) -> Tags:
    parser = Tags()
    parser.feed(markup)
    parser.close()
    return parser


@pytest.fixture(scope="module")
def hostile(registry):
    return encoder_attention(registry.encoder_with_attention(), HOSTILE_A, HOSTILE_B)


@pytest.fixture(scope="module")
def frame(hostile):
    att, tokens, b_start, notice = hostile.for_views()
    return sandboxed_iframe(views_document(att, tokens, b_start, notice=notice + " <i>notice</i>"))


def test_outer_markup_is_one_sandboxed_iframe(frame):
    outer = parse(frame)
    assert [tag for tag, _ in outer.tags] == ["iframe"]
    attrs = outer.tags[0][1]
    assert attrs["sandbox"] == "allow-scripts"  # scripts run, but in an opaque origin
    assert frame.endswith("></iframe>") and "<" not in frame.split("srcdoc=", 1)[1].removesuffix("></iframe>")


def test_hostile_tokens_stay_text_inside_the_document(frame, hostile):
    document = parse(frame).tags[0][1]["srcdoc"]
    inner = parse(document)
    names = [tag for tag, _ in inner.tags]
    assert "img" not in names and "b" not in names and "i" not in names
    assert not any(key.startswith("on") for _, attrs in inner.tags for key in attrs)
    assert names.count("script") == 6  # d3, jQuery, require.js, shared data, two views
    assert not any(attrs.get("src") or attrs.get("href") for _, attrs in inner.tags)
    # the tokens reach the page only as escaped JSON strings, which decode to the original text
    view_scripts = [s for s in inner.scripts if "genaiLabParams({" in s]
    assert len(view_scripts) == 2
    for script in view_scripts:
        literal = script.split("genaiLabParams(", 1)[1].split(");\n", 1)[0]
        assert "<" not in literal and ">" not in literal
        params = json.loads(literal)
        assert params["attention"][0]["left_text"] == hostile.tokens
    assert {"<", "script", ">", "\""} <= set(hostile.tokens)  # the input really was hostile


def test_no_reference_to_another_host(frame):
    document = html.unescape(frame)
    assert "cdnjs" not in document and "ajax/libs" not in document  # bertviz's CDN paths are gone
    urls = set(re.findall(r"https?://[^\s\"'<>)]+", document))
    assert urls <= NON_FETCHED, urls - NON_FETCHED
    assert not re.search(r"""(src|href)\s*=\s*["']?\s*(https?:)?//""", document, re.I)


def test_shared_data_matches_the_attention(hostile, frame):
    document = parse(frame).tags[0][1]["srcdoc"]
    data_script = next(s for s in parse(document).scripts if s.startswith("window.GENAI_ATTN = "))
    shared = np.array(json.loads(data_script.split(" = ", 1)[1].split(";", 1)[0]))
    att, *_ = hostile.for_views()
    np.testing.assert_allclose(shared / 1000, att, atol=5e-4 + 1e-9)


def test_json_for_script_escapes_everything_that_could_close_a_tag():
    text = json_for_script(["</script>", "a&b", "\u2028"])
    assert "<" not in text and ">" not in text and "&" not in text
    assert json.loads(text) == ["</script>", "a&b", "\u2028"]


def test_payload_of_64_tokens_on_minilm_is_under_2_mb(registry):
    data = encoder_attention(registry.encoder_with_attention(), "word " * 62)
    att, tokens, b_start, notice = data.for_views()
    assert len(tokens) == 64
    page = sandboxed_iframe(views_document(att, tokens, b_start, notice=notice))
    assert len(page.encode()) < 2_000_000


def test_layer_subset_and_bad_layers(hostile):
    att, tokens, b_start, _ = hostile.for_views()
    document = views_document(att, tokens, b_start, layers=[1, 4])
    data_script = next(s for s in parse(document).scripts if s.startswith("window.GENAI_ATTN = "))
    assert len(json.loads(data_script.split(" = ", 1)[1].split(";", 1)[0])) == 2
    assert '"include_layers":[1,4]' in document
    with pytest.raises(ValueError, match="between 0 and 5"):
        views_document(att, tokens, b_start, layers=[6])


def test_head_grid_is_escaped_and_complete(hostile):
    grid = head_grid_html(head_stats(hostile.attentions, hostile.sep_positions))
    tags = parse(grid).tags
    assert sum(tag == "td" for tag, _ in tags) == 6 * 12
    assert all(tag in {"div", "p", "span", "table", "tr", "th", "td"} for tag, _ in tags)


def test_heatmap_png_of_hostile_tokens_and_bad_heads(hostile, tmp_path):
    one = heatmap_png(hostile, 5, 11, tmp_path / "head.png")
    average = heatmap_png(hostile, 0, None, tmp_path / "average.png")
    for path in (one, average):
        assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    np.testing.assert_allclose(hostile.head_matrix(0, None), hostile.attentions[0].mean(0))
    with pytest.raises(ValueError, match="Layer must be between 0 and 5"):
        heatmap_png(hostile, 6, None, tmp_path / "bad.png")
    with pytest.raises(ValueError, match="Head must be between 0 and 11"):
        heatmap_png(hostile, 0, 12, tmp_path / "bad.png")
    assert not (tmp_path / "bad.png").exists()
