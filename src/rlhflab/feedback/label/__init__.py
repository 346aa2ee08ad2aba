"""Human preference labelling: a SQLite-backed query queue, a web app, export and statistics."""
