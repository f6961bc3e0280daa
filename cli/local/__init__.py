"""Running resources on this machine: the plan, the runner and its state (`cotctl run --local`)."""
