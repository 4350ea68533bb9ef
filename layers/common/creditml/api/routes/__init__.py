"""One router per resource. Functions include the routers they serve."""
