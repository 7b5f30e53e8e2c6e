"""The guided strategy: the code drives the research, the model only writes.

A free ReAct loop needs a model that can plan, call tools and stop on its own; a 135M or 1.5B model
on a laptop cannot (it repeats one call, never searches, or echoes the prompt). Here the code
searches the question and the model's sub-queries, opens the best pages, picks passages with BM25,
and asks the model for one constrained JSON reply per report section, whose citations are an enum
of the keys of the passages it was shown. Every output is judged before it is kept; a section that
fails falls back to the passages themselves, quoted with their citations. The run directory is the
ordinary one: the code's steps are recorded as tool calls, so ``messages.json`` reads like a ReAct
trajectory and ``resume`` continues from the last recorded step.
"""
