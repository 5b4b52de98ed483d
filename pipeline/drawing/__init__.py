"""The report's parts: tables, figures and the gallery (only the report stage uses them)."""
