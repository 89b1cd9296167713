"""The numbered analysis scripts (``NN_name/run.py`` + ``config.toml``) and their wiring."""
