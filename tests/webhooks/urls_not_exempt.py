"""A URLconf for test_wsgi_fastpath: one view that is csrf-exempt and one that is not."""

from django.http import HttpRequest, HttpResponse
from django.urls import path
from django.views.decorators.csrf import csrf_exempt


def not_exempt(request: HttpRequest) -> HttpResponse:
    return HttpResponse(b"")


@csrf_exempt
def exempt(request: HttpRequest) -> HttpResponse:
    return HttpResponse(b"")


urlpatterns = [
    path("not-exempt/", not_exempt, name="not_exempt"),
    path("exempt/", exempt, name="exempt"),
]
