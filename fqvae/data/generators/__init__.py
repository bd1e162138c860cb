"""Pure numpy renderers of the procedural datasets (no file I/O)."""
