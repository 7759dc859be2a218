"""Research scripts (issue 16's probes of the shapes world's solver, judge and tower), out of the product's import path.

Run from the repository root as modules, e.g. ``.venv/bin/python -m research.solver_probes DATA_DIR none``; each reads
a demo's data root (after ``make demo``: ``data``). They use public names only: ``genixer``, the world they study,
``genixer_assets.common`` (the run context and its data source) and ``resources``.
"""
