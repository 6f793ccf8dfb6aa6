"""irisdag's benchmark harnesses. ``python -m benchmarks`` runs the speed benchmarks (see run.py)."""
