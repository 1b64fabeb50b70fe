"""The sweep domain: BAI merges, sweep specs, the search space, the runner and reports."""
