"""The test suite; its folders mirror the source tree (README's layout table)."""

from pathlib import Path

REPO = Path(__file__).resolve().parent.parent  # the checkout's root, wherever a test sits below tests/
PAID_ORDERS = REPO / "examples" / "paid-orders.yaml"  # the example with every field
