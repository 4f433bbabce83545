"""What operators read and run: status, doctor, a job's diagnosis and its verdict, the
event log and its follower, and the API tokens they issue."""
