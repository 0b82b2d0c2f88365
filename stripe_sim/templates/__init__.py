"""Jinja2 templates of the hosted pages (a package so that they ship with the wheel)."""
