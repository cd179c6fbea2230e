"""Regression evals of the coach, the simulated customer, the scorecard and the guidance
engine (``coachbot eval``).

* :mod:`bot.evals.suites`: YAML suites in ``evals/suites/`` → validated cases; ``--filter``.
* :mod:`bot.evals.assertions`: one function per assertion type, each a verdict with a "why".
* :mod:`bot.evals.cache`: a response cache (SQLite) behind a caching chat model, and cached
  embeddings, so an unchanged re-run never loads the llama.cpp model.
* :mod:`bot.evals.judge`: the llm-rubric judge (configurable; the embedded model by default).
* :mod:`bot.evals.runner`: runs cases (repeats, workers, progress) → :mod:`bot.evals.results`.
* :mod:`bot.evals.baseline`: saved per-case results and the comparison (regressions).
* :mod:`bot.evals.reports`: terminal table, static HTML, JUnit XML and JSON.
* :mod:`bot.cli.evals`: the thin ``coachbot eval`` adapter.

See docs/EVALS.md.
"""
