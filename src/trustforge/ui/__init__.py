"""`trustforge ui`: a web dashboard of the workspace's runs, models, audit log and drift.

It reads the workspace and registry through the library (no second data path) and acts as the
signed-in user: every page and action is checked against `trustforge.secure.POLICY`, every
change and every denial is audited. See `_session.py` for sign-in, sessions and CSRF, and
`_render.py` for the Content-Security-Policy.
"""

from trustforge.ui._app import create_app
from trustforge.ui._serve import run_ui

__all__ = ["create_app", "run_ui"]
