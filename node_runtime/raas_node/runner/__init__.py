"""The job runner: fetch a user's code, resolve its requirements, run it under limits."""
