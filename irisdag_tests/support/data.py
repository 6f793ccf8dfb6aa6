"""Test data kept inside the repository, so a user's clone runs the tests alone.

``course/`` holds the course's public files (``iris.csv``: 1,050 rows, no
header; ``iris_y.csv``: their labels; ``model.json``: an XGBoost 2.0 model);
``keys.tsv`` holds checked ``iris-r1`` key vectors.
"""

from pathlib import Path

DATA = Path(__file__).resolve().parents[1] / "data"
COURSE = DATA / "course"
KEY_VECTORS = DATA / "keys.tsv"

__all__ = ["DATA", "COURSE", "KEY_VECTORS"]
