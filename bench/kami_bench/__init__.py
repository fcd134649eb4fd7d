"""The purchase benchmark of issue 8 (`bench/purchases.py`): load generation
over the public HTTP APIs, and the measurements taken around it."""
