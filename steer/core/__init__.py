"""The steer itself: the frozen transform, its trainable module, the LM-head hook and file I/O."""
