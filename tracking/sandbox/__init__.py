"""The carrier sandbox: a local HTTP server speaking the UPS, FedEx, USPS, DHL and 17TRACK tracking APIs."""

from tracking.sandbox.journeys import FINAL_STATUS, Milestone, Scenario, scenario_for
from tracking.sandbox.numbers import numbers_for
from tracking.sandbox.remote import SandboxProcess
from tracking.sandbox.server import CARRIERS, CarrierSandbox, Limit, published_limits

__all__ = [
    "CARRIERS",
    "FINAL_STATUS",
    "CarrierSandbox",
    "Limit",
    "Milestone",
    "SandboxProcess",
    "Scenario",
    "numbers_for",
    "published_limits",
    "scenario_for",
]
