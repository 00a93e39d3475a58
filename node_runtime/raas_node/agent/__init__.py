"""The robot agent: the only program that touches a robot."""
