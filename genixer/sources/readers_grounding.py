"""Readers of the grounding-task formats: RefCOCO(+/g), Visual Genome, Visual7W, PointQA Local, Shikra GPT4Gen."""
