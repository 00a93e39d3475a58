"""Where a RaasPendulum's steps happen: the simulator, or a real robot through its agent."""
