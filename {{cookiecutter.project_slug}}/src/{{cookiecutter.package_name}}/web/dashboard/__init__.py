"""The operator dashboard at /dashboard: queues, workers, cron, jobs, dead letters, and actions.

Server-rendered HTML (pages.py) with a little plain JavaScript for live regions and confirmations
(static/), no build step and no CDN. It reads through the same JobQueue as the API, with bounded
reads only (no key scans), so it costs the workers nothing.
"""

from .routes import mount_dashboard

__all__ = ["mount_dashboard"]
