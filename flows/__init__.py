"""Prefect only (DESIGN.md §6): the `fineco` flow (`pipeline_flow`), its tasks (`tasks`),
deployments, the dashboard's artifacts, GPU telemetry and stage-log forwarding, the local server
lifecycle and the `fineco` command line. No tensor code lives here.
"""
