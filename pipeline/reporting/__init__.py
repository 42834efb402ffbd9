"""What the report stage draws and writes (DESIGN.md §3): `paper` holds the paper's published
numbers, `tables` lays out the paper-style tables with ours beside them, `figures` draws the loss
curves and frame strips. The report stage reads earlier stages' files and calls these.
"""
