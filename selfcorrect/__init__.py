"""Self-correction: error codes, answer matching, correction examples and their generator."""
