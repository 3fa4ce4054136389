"""WSGI entry point (gunicorn, granian, runserver); production settings unless told otherwise.

Runtime routes take the lean path (delivery.wsgi); everything else is Django's
ordinary handler.
"""

import os

from django.core.wsgi import get_wsgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "agentconfig.settings.production")

django_application = get_wsgi_application()

from delivery.wsgi import RuntimeFastPath  # noqa: E402 (needs the app set up)

application = RuntimeFastPath(django_application)
