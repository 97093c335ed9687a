"""How close and how costly: metrics, references, orders of convergence, the step search, the summary."""
