"""Jinja2 templates of the server-rendered pages (a package so that installs carry them)."""
