"""Typer command functions, one module per stage. Each keeps its imports light at module level
(heavy libraries are imported inside the function) so `steper-bench --help` stays fast."""
