"""A file email backend that can die: the network edge of the worker-kill test.

It writes each message like Django's file backend. When a message goes to OMA_TEST_KILL_AFTER_SENDING_TO and the
marker file OMA_TEST_KILL_MARKER does not exist yet, it creates the marker and SIGKILLs its own process right
after the message is written: a worker dying between "the mail server took it" and "recorded as sent".
"""

from __future__ import annotations

import os
import signal
from collections.abc import Sequence
from pathlib import Path

from django.core.mail.backends.filebased import EmailBackend
from django.core.mail.message import EmailMessage


class KillOnceFileBackend(EmailBackend):
    def send_messages(self, email_messages: Sequence[EmailMessage]) -> int:
        sent = super().send_messages(email_messages)
        victim = os.environ.get("OMA_TEST_KILL_AFTER_SENDING_TO", "")
        marker = Path(os.environ.get("OMA_TEST_KILL_MARKER", "/nonexistent/marker"))
        if victim and any(victim in message.to for message in email_messages) and not marker.exists():
            self.close()  # the message is on disk, as it would be in the mail server's queue
            marker.write_text(str(os.getpid()))
            os.kill(os.getpid(), signal.SIGKILL)
        return sent
