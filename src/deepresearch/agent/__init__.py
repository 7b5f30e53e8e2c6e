"""The research agent: one ReAct loop, its context policy, prompts, events and budgets."""
