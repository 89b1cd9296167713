"""Embedded resources fetched without the hub: SmolLM2 from a GGUF wheel, VADER-labelled text."""
