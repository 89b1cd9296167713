"""Applications built on steer: the demo (train, generate, evaluate, write a report)."""
