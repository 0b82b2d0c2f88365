"""Jinja2 templates of the customer emails (a package so that wheels ship them)."""
