"""Pictures and the page: what a sweep's pictures are, how they are drawn, and the one-file HTML page."""
