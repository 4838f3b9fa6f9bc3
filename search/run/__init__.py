"""The run as a whole: the driver (the only writer of run state), preflight checks, resume rules,
the final stage and the progress line."""
