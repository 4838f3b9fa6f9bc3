"""Ray Tune around the driver: the session (Ray start-up, the Tuner), the trainable and thin adapters."""
