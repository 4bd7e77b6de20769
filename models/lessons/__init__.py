"""Lessons: small YAML files that drive the tabs step by step (plain data, no gradio).

- lesson.py: read a lesson file into a `Lesson` (ordered `Step`s), or say what is wrong with it.
- catalogue.py: what the live app offers (tabs, sections, fillable components, actions) as plain
  data, and the check of a lesson against it: unknown tab or component, value out of range.
- warmup.py: what a lesson needs loaded (models, quantized builds, the sample index), loaded in
  the background so the first click in front of a class never waits.
- presenter.py: deep links (?lesson=decoding&step=3), the class link and the instructor key.
"""
