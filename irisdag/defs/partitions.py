"""Time windows of incoming batches: one partition per four hours (DESIGN §1)."""
from datetime import datetime, timedelta

from dagster import TimeWindowPartitionsDefinition

WINDOW_START = "2026-11-01-00:00"
WINDOW_FORMAT = "%Y-%m-%d-%H:%M"

batch_windows = TimeWindowPartitionsDefinition(
    cron_schedule="0 */4 * * *", start=WINDOW_START, fmt=WINDOW_FORMAT,
)


def window_index(partition_key: str) -> int:
    """0 for the first window, 1 for the next; drives the generator's drift and seed."""
    start = datetime.strptime(WINDOW_START, WINDOW_FORMAT)
    this = datetime.strptime(partition_key, WINDOW_FORMAT)
    return int((this - start).total_seconds() // (4 * 3600))


def window_key(index: int) -> str:
    start = datetime.strptime(WINDOW_START, WINDOW_FORMAT)
    return (start + timedelta(hours=4 * index)).strftime(WINDOW_FORMAT)
