"""Wiring shared by the analysis scripts: command-line parsing, TOML configs, common steps.

Scripts run as ``python analyses/NN_name/run.py`` put the repository root on ``sys.path`` and
import ``analyses.wiring.family`` (``02_*`` … ``07_*``) or ``analyses.wiring.steer``
(``10_*`` … ``14_*``). Library code never imports this package.
"""
