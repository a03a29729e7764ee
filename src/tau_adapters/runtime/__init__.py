"""Runtime: the background loop, CPU scheduling, the HTTP client, logging and GC hygiene."""
