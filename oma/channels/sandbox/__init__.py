"""The ShipStation sandbox (server.py) and the command that runs it (management/commands/shipstation_sandbox.py)."""
