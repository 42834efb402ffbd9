"""`fineco bench decode|extract|train`: speed and memory figures printed as tables, never timed
tests. Each measurement runs in a fresh interpreter (`process.run_job` → `__main__`) so its peak
RSS is its own; repeats are interleaved so a drifting machine hits every method alike.
"""
