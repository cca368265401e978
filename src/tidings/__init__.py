"""tidings: collect, extract, de-duplicate, summarize, classify and publish tech reading."""

__version__ = "0.1.0"
