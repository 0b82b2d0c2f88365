"""Customer emails: the templates, the context they are filled from, and rendering.

Pure: nothing here sends mail or reads the database (`core/smtp.py` and
`activities/notifications.py` do).
"""
