"""The customer emails themselves: what a template is given, which templates are used, the message sent.

Templates (Django templates; English shipped, every sentence under gettext so that a translation applies):

    notifications/<milestone>_subject.txt   the subject (one line: whitespace is collapsed)
    notifications/<milestone>.txt           the plain-text body
    notifications/<milestone>.html          the HTML body
    notifications/base.txt, base.html       what the shipped bodies extend: branding, tracking button, unsubscribe

`<milestone>` is in_transit, out_for_delivery, available_for_pickup, attempt_failed, delivered or exception. A
merchant overrides any of them with a file of the same name in a template directory searched first (settings
TEMPLATES DIRS: oma/templates/), for every store, or under notifications/<store domain>/ for one store only.

Subjects and plain-text bodies are rendered without HTML escaping; HTML bodies with it, as usual.
Context: store_name, branding (accent, text_on_accent, logo_url, support_email, support_url), milestone,
milestone_label, order_label, tracking_number, carrier_name, carrier_link, tracking_url (the signed /track/
page), unsubscribe_url, estimated_delivery (a date or None), delivered_at, signed_by, location (the latest scan's).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import date, datetime, timedelta
from email.utils import formataddr, parseaddr
from typing import Any

from django.conf import settings
from django.core.mail import EmailMultiAlternatives
from django.template import Context
from django.template.loader import render_to_string, select_template
from django.utils import timezone, translation

from oma.merchant.tokens import tracking_path_for
from oma.merchant.tracking_page import Branding, branding_for, carrier_link, carrier_name
from oma.notifications.milestones import Milestone
from oma.notifications.tokens import unsubscribe_path_for
from oma.orders.models import Order
from oma.stores.models import Store
from tracking.models import Shipment


@dataclass(frozen=True)
class ParcelFacts:
    """What an email says about the order and its parcel (no personal data beyond the order's number)."""

    order_label: str
    tracking_number: str
    carrier_name: str
    carrier_link: str
    tracking_path: str
    unsubscribe_path: str
    estimated_delivery: date | None = None
    delivered_at: datetime | None = None
    signed_by: str = ""
    location: str = ""


@dataclass(frozen=True)
class RenderedEmail:
    subject: str
    text: str
    html: str


def parcel_facts(*, shipment: Shipment, order: Order, location: str = "") -> ParcelFacts:
    """The facts of a real parcel; `location` is its latest scan's (the caller reads it with the row)."""
    return ParcelFacts(
        order_label=order.name or f"#{order.order_id}",
        tracking_number=shipment.tracking_number,
        carrier_name=carrier_name(shipment.carrier),
        carrier_link=carrier_link(shipment.carrier, shipment.tracking_number, shipment.tracking_url),
        tracking_path=tracking_path_for(order),
        unsubscribe_path=unsubscribe_path_for(order),
        estimated_delivery=shipment.estimated_delivery_date,
        delivered_at=shipment.delivered_at,
        signed_by=shipment.signed_by,
        location=location,
    )


def sample_facts(*, now: datetime | None = None) -> ParcelFacts:
    """Made-up facts for the template previews in admin (links lead to the tracking page's 'not valid' page)."""
    now = now or timezone.now()
    return ParcelFacts(
        order_label="#1001",
        tracking_number="1Z999AA10123456784",
        carrier_name="UPS",
        carrier_link=carrier_link("ups", "1Z999AA10123456784"),
        tracking_path="/track/preview/",
        unsubscribe_path="/notifications/unsubscribe/preview/",
        estimated_delivery=(now + timedelta(days=2)).date(),
        delivered_at=now,
        signed_by="J. Smith",
        location="Louisville, KY, US",
    )


def absolute(public_url: str, path: str) -> str:
    return f"{public_url.rstrip('/')}{path}" if path else ""


def email_context(
    *, store: Store, branding: Branding, milestone: str, facts: ParcelFacts, public_url: str
) -> dict[str, Any]:
    return {
        "store_name": branding.name or str(store),
        "branding": replace(branding, logo_url=absolute(public_url, branding.logo_url)),
        "milestone": milestone,
        "milestone_label": Milestone(milestone).label,
        "order_label": facts.order_label,
        "tracking_number": facts.tracking_number,
        "carrier_name": facts.carrier_name,
        "carrier_link": facts.carrier_link,
        "tracking_url": absolute(public_url, facts.tracking_path),
        "unsubscribe_url": absolute(public_url, facts.unsubscribe_path),
        "estimated_delivery": facts.estimated_delivery,
        "delivered_at": facts.delivered_at,
        "signed_by": facts.signed_by,
        "location": facts.location,
    }


def template_names(*, store: Store, milestone: str, suffix: str) -> list[str]:
    """The store's own template first, then everyone's (the merchant's DIRS before the shipped app templates)."""
    return [f"notifications/{store.domain}/{milestone}{suffix}", f"notifications/{milestone}{suffix}"]


def _render_plain(names: list[str], context: dict[str, Any]) -> str:
    """A subject or a plain-text body: rendered without HTML escaping ("Bob & Co", not "Bob &amp; Co"), so that a
    merchant's template needs no {% autoescape off %}."""
    return select_template(names).template.render(Context(context, autoescape=False))


def email_render(*, store: Store, milestone: str, context: dict[str, Any], language: str) -> RenderedEmail:
    with translation.override(language or settings.LANGUAGE_CODE):
        subject = _render_plain(template_names(store=store, milestone=milestone, suffix="_subject.txt"), context)
        text = _render_plain(template_names(store=store, milestone=milestone, suffix=".txt"), context)
        html = render_to_string(template_names(store=store, milestone=milestone, suffix=".html"), context)
    return RenderedEmail(subject=" ".join(subject.split())[:255], text=text.strip() + "\n", html=html)


def email_previews(*, store: Store, language: str) -> list[tuple[str, RenderedEmail]]:
    """Every milestone's email for this store, rendered with sample facts: what admin's preview shows."""
    branding = branding_for(store)
    public_url = settings.OMA_PUBLIC_URL or "https://oma.example.com"
    facts = sample_facts()
    return [
        (
            milestone,
            email_render(
                store=store,
                milestone=milestone,
                context=email_context(
                    store=store, branding=branding, milestone=milestone, facts=facts, public_url=public_url
                ),
                language=language,
            ),
        )
        for milestone in Milestone.values
    ]


def email_message(
    *,
    rendered: RenderedEmail,
    to: str,
    sender_name: str,
    reply_to: str,
    unsubscribe_url: str,
    notification_id: int,
) -> EmailMultiAlternatives:
    """The message: from DEFAULT_FROM_EMAIL's address under the store's name, with a one-click unsubscribe
    (RFC 8058) that mail programs show next to the sender."""
    _, from_address = parseaddr(settings.DEFAULT_FROM_EMAIL)
    message = EmailMultiAlternatives(
        subject=rendered.subject,
        body=rendered.text,
        from_email=formataddr((sender_name, from_address)) if sender_name and from_address else None,
        to=[to],
        reply_to=[reply_to] if reply_to else None,
        headers={
            "List-Unsubscribe": f"<{unsubscribe_url}>",
            "List-Unsubscribe-Post": "List-Unsubscribe=One-Click",
            "Auto-Submitted": "auto-generated",
            "X-OMA-Notification": str(notification_id),
        },
    )
    message.attach_alternative(rendered.html, "text/html")
    return message
