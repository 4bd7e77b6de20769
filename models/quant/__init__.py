"""Quantized vs full: schemes (what is built), cache (built once), inputs (what a request may ask),
run (timings and reference quality), compare (the side-by-side on a prompt), report (table rows),
metrics (the maths)."""
