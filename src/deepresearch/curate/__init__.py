"""Curation: our agent's run directories filtered into training data (``deepresearch curate``).

``curate.pipeline.curate`` is the entry point; ``curate.filters`` holds the deterministic filters,
``curate.export`` the SFT and mid-training formats, ``curate.card`` the data card.
"""
