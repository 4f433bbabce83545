"""What runs on a worker machine: executing a job's command and streaming its output."""
