"""RaaS robot node runtime: the robot agent, its drivers, and the virtual rig."""
