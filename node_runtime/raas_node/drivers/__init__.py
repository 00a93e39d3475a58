"""Hardware drivers of the robot agent: one interface, a pigpio and a simulated implementation."""
