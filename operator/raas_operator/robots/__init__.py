"""The Robot contract: a robot's spec (node, type, limits, calibration) and its reported status."""
