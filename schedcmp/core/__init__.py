"""The vocabulary every layer shares, pure and torch-free: errors, records, scheduler names, the plan."""
