"""The support console's pages (`api.routes.console`)."""
