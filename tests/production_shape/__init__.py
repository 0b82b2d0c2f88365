"""docker-compose.yml's stack run as local processes, with faults injected (issue 24)."""
