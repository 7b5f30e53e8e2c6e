"""Training data by atomic capability (planning, deep search, reflection and verification, report
writing), synthesised from documents, graphs, linked corpora and our own agent's runs.

Every pipeline is JSONL in, JSONL out through ``synth.engine.run_items`` (resumable, bounded,
tallied), talks to any OpenAI-compatible model through ``synth.model.Model`` with prompts of its own
in ``synth/prompts/`` (en and zh), and gets the search backend and our agent from
``synth.context.SynthContext``.
"""
