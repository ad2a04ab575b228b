"""The live monitor: the evaluation callback, its console view, and the report."""
