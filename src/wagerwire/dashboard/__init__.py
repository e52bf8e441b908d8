"""The live dashboard at ``/``: one static page built on the public API only.

The page (``static/index.html``, ``app.js``, ``app.css``) is hand-written, has no build step
and fetches nothing from outside the hub: it streams over the native WebSocket ``/v1/ws``,
resumes with the native resume tokens after a drop, and reads snapshots over REST.
"""

from __future__ import annotations

from wagerwire.dashboard.routes import dashboard_feature, router

__all__ = ["dashboard_feature", "router"]
