"""One TLS context per process for every HTTP client we make.

Building an ``ssl.SSLContext`` loads the whole CA bundle, about 15 ms of CPU each time, and httpx does
it for every client. A run makes three or four clients (model, fetcher, search provider) and a
benchmark runs dozens of runs in one event loop, where those milliseconds queue behind each other:
at 50 runs it was a quarter of the benchmark's wall time. The context is built the way httpx would
(``SSL_CERT_FILE``/``SSL_CERT_DIR``, else certifi) and, being only read once built, is safe to share.
"""

from __future__ import annotations

import ssl
from functools import cache


@cache
def shared_ssl_context() -> ssl.SSLContext:
    import httpx

    return httpx.create_ssl_context()
