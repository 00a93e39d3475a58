"""The scheduler core: pure functions from queue, robots and usage to assignments."""
