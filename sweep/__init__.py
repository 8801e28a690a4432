"""sweep: a parallel sweep orchestrator for studying training dynamics."""
