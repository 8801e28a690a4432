"""Analysis: the sweep's results read like with like, rankings, findings, tuning, and tables as text."""
