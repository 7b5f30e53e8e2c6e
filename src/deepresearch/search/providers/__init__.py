"""Web search providers: one module per API, each a ``SearchBackend`` with its own HTTP client.

Nothing is imported here: ``deepresearch.search.backends`` maps names to ``module:Class`` and imports
a provider only when it is chosen. What the providers share (the client, one retry, the error
messages the model sees) is in ``_http.py``; each module holds its request, its documented response
shape and the mapping to ``SearchHit``.

Every constructor takes the API root its requests go to, and the provider appends its own path
(``/search``, ``/res/v1/web/search``…): ``endpoint`` replaces the vendor's default (a proxy, a
self-hosted gateway, the fake server in the tests); SearXNG's ``url`` is the instance itself.
"""
