"""Live inference: batched generation, the evaluation callback, and the console view."""
