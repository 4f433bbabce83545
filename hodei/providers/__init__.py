"""Where workers run: local processes, Docker containers, Kubernetes pods."""
