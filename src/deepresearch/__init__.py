"""deepresearch: a single ReAct research agent that writes long reports with verifiable citations."""
