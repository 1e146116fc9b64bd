"""Fulfillment writes, one module per job (the pure plan is oma/fulfillment/plan.py, the pure status status.py):

- `push`: the intent rows and the exactly-once push state machine that calls Genstore, and their queueing;
- `unified_status`: computing and storing each order's unified status.
"""
