"""Self-correction: correction records from wrong answers, and the generator that queues them."""
