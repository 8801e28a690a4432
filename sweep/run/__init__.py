"""Running trials: the plan, Ray Tune, the trial loop, stop rules, and the driver's ledger, recorder and
progress line."""
