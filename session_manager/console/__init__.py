"""The admin console: server-rendered pages over the admin API's own functions.

A browser cannot send ``Authorization: Bearer``, so ``/console/login`` takes the admin
credential (the ``ADMIN_TOKEN``, or an API key with scope ``admin``: its tenant only) in a form
and keeps it in an HttpOnly, ``SameSite=Strict`` cookie scoped to ``/console``; every page
checks it exactly as ``/admin`` checks the bearer. Actions are form POSTs carrying a token
derived from the credential, so another site cannot make a logged-in browser act.
Templates and assets are package files: nothing is loaded from elsewhere.
"""

from session_manager.console.routes import CONSOLE_HANDLERS

__all__ = ("CONSOLE_HANDLERS",)
