"""``deepresearch serve``: the agent behind an HTTP API with live events, a web page, an
OpenAI-compatible endpoint and an MCP server — all submitting to one ``JobManager`` (``jobs``), which
runs the same ``research``/``resume`` as the CLI. FastAPI and uvicorn are the optional extra ``server``.
"""
