"""gunicorn entry for the reference server (as the workshop's wsgi.py): ``reference_wsgi:app``.

The model directory comes from ``SM_MODEL_DIR`` (default /opt/ml/model), as for our server.
"""

from __future__ import annotations

import os

from reference_app import create_app

app = create_app(os.environ.get("SM_MODEL_DIR", "/opt/ml/model"))
