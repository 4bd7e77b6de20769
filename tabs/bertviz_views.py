"""bertviz head view and model view as one self-contained, offline, sandboxed `<iframe srcdoc>`.

bertviz (`html_action="return"`) writes HTML that loads require.js, d3 and jQuery from a CDN
and embeds the attention as a JSON literal inside a `<script>`. Here:
- the CDN tags and bertviz's `require.config` paths are removed; the vendored copies under
  assets/vendor/ are inlined and registered as AMD modules, so nothing is fetched;
- both views read one shared copy of the attention (integers in thousandths), instead of
  each embedding its own floats: a 64-token MiniLM page stays well under 2 MB;
- lines for weights under 2% (5% in the model view's thumbnails) are not created: bertviz
  draws each line with opacity = its weight, so they are all but invisible, and a 64-token
  model view drops from ~300k SVG lines to a few percent of that, which is most of the time
  the browser spends drawing;
- `<`, `>` and `&` inside the JSON are written as \\u escapes, so a token such as
  `</script><img onerror=...>` stays a string (bertviz then draws it with d3 `.text()`);
- the document goes into `srcdoc` HTML-escaped, with `sandbox="allow-scripts"`: its scripts
  run in an opaque origin with no access to the app page or its cookies.

Text that lands in HTML (titles, hints, notices, the srcdoc attribute) goes through the one
helper, `tabs.common.escape`. Text inside a `<script>` cannot use it (the browser does not
decode entities there): `json_for_script` and `script` guard that context instead.
"""

from __future__ import annotations

import functools
import json
import re
from pathlib import Path

import numpy as np

from tabs.common import escape

VENDOR = Path(__file__).resolve().parents[1] / "assets" / "vendor"
# Loaded as plain scripts before require.js exists, so d3/jQuery become window globals
# (an anonymous AMD define() in an inline script would be a require.js "mismatch" error).
LIBS = ("d3/d3.min.js", "jquery/jquery.min.js", "requirejs/require.js")
SCALE = 1000  # attention is sent as integers in thousandths
# bertviz's own <script src="..."> tag(s) that fetch require.js from the web; any remote src is removed.
REMOTE_SCRIPT_TAG = re.compile(r'<script src="[a-z]+://[^"]*"></script>')
REQUIRE_CONFIG = re.compile(r"require\.config\(\{.*?\}\);", re.DOTALL)
PARAMS_START = "const params = "
# bertviz's names for the slices of a sentence pair -> (rows, columns): "a", "b" or "all"
SLICES = {None: ("all", "all"), "All": ("all", "all"),
          "Sentence A -> Sentence A": ("a", "a"), "Sentence B -> Sentence B": ("b", "b"),
          "Sentence A -> Sentence B": ("a", "b"), "Sentence B -> Sentence A": ("b", "a")}

MIN_DRAWN = 0.02  # attention lines below this weight are not drawn (2% opacity: invisible)
MIN_THUMB = 0.05  # the same in the model view's small thumbnails, where faint lines vanish anyway
# Exact edits of bertviz 1.4.1's scripts: (old, new, expected count). Line data become only
# the weights >= MIN_DRAWN, as Number objects that carry their column in `.i`.
ROW_DATA = """.data(function (d) { // Loop over all target tokens
                    return d;
                })"""
PATCHES = {
    "head": [('.selectAll("line")\n            .data(d => d)',
              '.selectAll("line")\n            .data(genaiLabSparse)', 1),
             ("(d, rightTokenIndex) => TEXT_TOP + rightTokenIndex * BOXHEIGHT", "(d) => TEXT_TOP + d.i * BOXHEIGHT", 1),
             ('.attr("right-token-index", (d, i) => i)', '.attr("right-token-index", (d) => d.i)', 1)],
    # first occurrence: the 7-pixel-high thumbnails; second: the enlarged head on click
    "model": [(ROW_DATA, [".data(genaiLabThumb)", ".data(genaiLabSparse)"], 2),
              ("(targetIndex + .5)", "(d.i + .5)", 2)],
}

PRELUDE_JS = f"var GENAI_SCALE = {SCALE}, GENAI_MIN = {MIN_DRAWN}, GENAI_MIN_THUMB = {MIN_THUMB};" + """
function genaiLabKeep(row, min) {
  var out = [];
  for (var i = 0; i < row.length; i++) {
    if (row[i] >= min) { var v = new Number(row[i]); v.i = i; out.push(v); }
  }
  return out;
}
function genaiLabSparse(row) { return genaiLabKeep(row, GENAI_MIN); }
function genaiLabThumb(row) { return genaiLabKeep(row, GENAI_MIN_THUMB); }
define('d3', [], function () { return window.d3; });
define('jquery', [], function () { return window.jQuery; });
function genaiLabParams(meta) {
  var data = window.GENAI_ATTN;
  meta.attention.forEach(function (d) {
    d.attn = data.map(function (layer) { return layer.map(function (head) {
      return head.slice(d.rows[0], d.rows[1]).map(function (row) {
        return row.slice(d.cols[0], d.cols[1]).map(function (v) { return v / GENAI_SCALE; });
      });
    }); });
    delete d.rows; delete d.cols;
  });
  return meta;
}
"""

PAGE_CSS = """
body { margin: 0; padding: 8px; background: #fff; color: #111;
       font-family: 'Helvetica Neue', Helvetica, Arial, sans-serif; }
h3 { margin: 12px 0 4px; font-size: 15px; }
p.hint { margin: 2px 0 8px; font-size: 12px; color: #555; }
"""


@functools.cache
def vendored(relative: str) -> str:
    """A vendored library's text (read once; the files never change while the app runs)."""
    return (VENDOR / relative).read_text(encoding="utf-8")


def script(js: str) -> str:
    """An inline <script>; '</' is written '<\\/' so no text inside can close the tag early."""
    return "<script>" + js.replace("</", "<\\/") + "</script>"


def json_for_script(value) -> str:
    """JSON that is safe inside a <script> element: no raw <, > or & at all."""
    text = json.dumps(value, ensure_ascii=False, separators=(",", ":"))
    for char, escaped in (("<", "\\u003c"), (">", "\\u003e"), ("&", "\\u0026"),
                          ("\u2028", "\\u2028"), ("\u2029", "\\u2029")):
        text = text.replace(char, escaped)
    return text


def _bounds(part: str, n: int, b_start: int | None) -> list[int]:
    return {"all": [0, n], "a": [0, b_start or n], "b": [b_start or n, n]}[part]


def _patch(js: str, kind: str) -> str:
    for old, new, count in PATCHES[kind]:
        if js.count(old) != count:
            raise RuntimeError(f"bertviz output changed: cannot apply the sparse-lines edit {old!r}")
        for replacement in new if isinstance(new, list) else [new] * count:
            js = js.replace(old, replacement, 1)  # occurrences in order
    return js


def _rewrite(view_html: str, n: int, b_start: int | None, kind: str, layers: list[int]) -> tuple[str, str]:
    """Split bertviz's output into (markup, script) with offline loading and shared data."""
    view_html, removed = REMOTE_SCRIPT_TAG.subn("", view_html)
    if not removed:
        raise RuntimeError("bertviz output changed: its remote require.js tag was not found")
    markup, sep, rest = view_html.partition('<script type="text/javascript">')
    js = rest.rsplit("</script>", 1)[0]
    js, found = REQUIRE_CONFIG.subn("", js, count=1)
    start = js.find(PARAMS_START)
    if not sep or not found or start < 0:
        raise RuntimeError("bertviz output changed: its script could not be rewritten for offline use")
    # bertviz's str.replace also pastes the JSON into the comment after it ("// HACK:
    # PYTHON_PARAMS is a template marker"), doubling the page: the whole line is replaced.
    params, end = json.JSONDecoder().raw_decode(js, start + len(PARAMS_START))
    line_end = js.find("\n", end)
    params["include_layers"] = layers
    for entry in params["attention"]:
        rows, cols = SLICES[entry["name"]]
        entry.pop("attn")
        entry["rows"], entry["cols"] = _bounds(rows, n, b_start), _bounds(cols, n, b_start)
    replacement = PARAMS_START + "genaiLabParams(" + json_for_script(params) + ");"
    js = js[:start] + replacement + (js[line_end:] if line_end >= 0 else "")
    return markup, _patch(js, kind)


def views_document(attentions: np.ndarray, tokens: list[str], sentence_b_start: int | None = None,
                   layers: list[int] | None = None, notice: str = "") -> str:
    """A complete HTML page with bertviz's head view and model view of `attentions` (L, H, n, n)."""
    import torch
    from bertviz import head_view, model_view

    n_layers = attentions.shape[0]
    layers = sorted(set(layers)) if layers else list(range(n_layers))
    if not all(0 <= i < n_layers for i in layers):
        raise ValueError(f"Layers must be between 0 and {n_layers - 1}.")
    n = len(tokens)
    small = torch.from_numpy(np.round(attentions[layers] * SCALE).astype(np.int16))
    shared = json_for_script(small.tolist())
    # The page reads the shared copy, so bertviz (which serialises whatever it is given) gets
    # only the first chosen layer; `_rewrite` then restores the full layer list. It indexes
    # attention[layer] and reads the head count from attention[0], hence the tiny stand-ins.
    stand_in = torch.zeros((1, small.shape[1], 1, 1), dtype=small.dtype)
    by_layer = [small[:1] if i == layers[0] else stand_in for i in range(n_layers)]
    pieces = []
    for kind, title, hint, view, kwargs in (
        ("head", "Head view", "Pick a layer; each colour is a head. Hover a token to see where it looks; "
         "double-click a colour to show only that head.", head_view, {}),
        ("model", "Model view", "Every head of the chosen layers at once; click a thumbnail to enlarge it.",
         model_view, {"display_mode": "light"}),
    ):
        result = view(attention=by_layer, tokens=list(tokens), sentence_b_start=sentence_b_start,
                      include_layers=layers[:1], html_action="return", **kwargs)
        markup, js = _rewrite(result.data, n, sentence_b_start, kind, layers)
        pieces.append((title, hint, markup, js))
    notice_html = f'<p class="hint">{escape(notice)}</p>' if notice else ""
    body = [notice_html]
    for title, hint, markup, _ in pieces:
        body += [f"<h3>{escape(title)}</h3>", f'<p class="hint">{escape(hint)}</p>', markup]
    libs = "".join(script(vendored(lib)) for lib in LIBS)
    data = script("window.GENAI_ATTN = " + shared + ";" + PRELUDE_JS)
    # The model view (the heavier drawing) starts in a later task, so the browser paints the
    # head view first instead of showing nothing until both are done.
    head_js, model_js = (js for *_, js in pieces)
    scripts = script(head_js) + script("setTimeout(function () {\n" + model_js + "\n}, 0);")
    return ("<!DOCTYPE html><html><head><meta charset='utf-8'><style>" + PAGE_CSS + "</style></head><body>"
            + "".join(body) + libs + data + scripts + "</body></html>")


def sandboxed_iframe(document: str, height: int = 900, title: str = "bertviz attention views") -> str:
    """Wrap a page into `<iframe srcdoc>`; the attribute value is fully HTML-escaped."""
    return (f'<iframe class="bertviz-frame" title="{escape(title)}" sandbox="allow-scripts" '
            f'referrerpolicy="no-referrer" style="width:100%;height:{int(height)}px;border:1px solid #ddd;'
            f'border-radius:6px;background:#fff" srcdoc="{escape(document)}"></iframe>')
