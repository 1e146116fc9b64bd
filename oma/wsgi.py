"""The WSGI entry point (gunicorn `oma.wsgi:application`)."""

import gc
import os

from django.core.wsgi import get_wsgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "oma.settings")
application = get_wsgi_application()

# Everything loaded so far (Django, the apps, their modules) lives as long as the process: moved out of the
# garbage collector's view, it is no longer walked by every full collection, which otherwise stalls requests.
gc.freeze()
