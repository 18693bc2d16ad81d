"""poolgate: an inference gateway for fleets of LLM model servers."""

__version__ = "0.1.0"
