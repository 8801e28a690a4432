"""sweep: a parallel sweep orchestrator for studying training dynamics."""
__version__ = "0.1.0"
