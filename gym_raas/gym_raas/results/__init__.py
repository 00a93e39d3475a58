"""Job results: the layout contract (where each file lives) and the stores that hold them."""
