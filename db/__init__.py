"""The service's own records: accounts, current entitlements, their change log, received events."""
