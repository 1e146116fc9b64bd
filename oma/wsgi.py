"""The WSGI entry point (gunicorn `oma.wsgi:application`).

Signed webhook deliveries (Genstore's and the channels') are POSTed by the thousand and answered after their commit:
they go past the middleware that do nothing for them (webhooks/wsgi_fastpath.py); every other request, and every
webhook request that is not a POST, goes through Django's full stack.
"""

import gc
import os

from django.core.wsgi import get_wsgi_application

from webhooks.wsgi_fastpath import WebhookFastPath

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "oma.settings")
application = WebhookFastPath(get_wsgi_application())

# Everything loaded so far (Django, the apps, their modules) lives as long as the process: moved out of the
# garbage collector's view, it is no longer walked by every full collection, which otherwise stalls requests.
gc.freeze()
