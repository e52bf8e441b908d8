"""wagerwire: a self-hostable real-time hub for casino-game and sports-betting data.

The server is ``wagerwire serve`` (see :mod:`wagerwire.node`); the Python client SDK is
:mod:`wagerwire.client`. This package root only names the version and the error tree, so
importing it stays cheap for clients.
"""

from wagerwire.errors import ClientError, ServerError, WagerwireError

__all__ = ["ClientError", "ServerError", "WagerwireError", "__version__"]

__version__ = "0.1.0"
