"""Immutable result types sharing one ``tidy()`` contract."""

from causalmem.results.aggte import AggteResult
from causalmem.results.attgt import AttGtResult
from causalmem.results.base import TIDY_COLUMNS
from causalmem.results.bayes import BayesDidResult
from causalmem.results.twfe import TwfeResult

__all__ = ["TIDY_COLUMNS", "AggteResult", "AttGtResult", "BayesDidResult", "TwfeResult"]
