from typing import Any

from django.core.management.base import BaseCommand, CommandParser

from oma.sandbox.cli import add_sandbox_arguments, sandbox_from_options, serve


class Command(BaseCommand):
    help = (
        "Run the Genstore sandbox: a fake Genstore API with generated, quirky orders for local stores, tests and "
        "benchmarks. Prints one line with the base URL(s), access token and client secret, then serves until "
        "Ctrl-C."
    )
    requires_system_checks: list[str] = []  # the sandbox touches no Django state: start fast

    def add_arguments(self, parser: CommandParser) -> None:
        add_sandbox_arguments(parser)

    def handle(self, *args: Any, **options: Any) -> None:
        def announce(line: str) -> None:
            self.stdout.write(line)
            self.stdout.flush()

        serve(sandbox_from_options(options), announce=announce)
