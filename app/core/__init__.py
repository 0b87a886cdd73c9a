"""What every process shares: the clock, logging, metrics, and which failures are transient."""
