"""steer: LM-Steer output-embedding steers."""
