"""`make bench`, `make bench-train`, `make bench-sources`: run from the repository root as modules
(`.venv/bin/python -m bench.run`, `-m bench.train`, `-m bench.sources`)."""
