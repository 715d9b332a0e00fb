"""Tools for technicians and the centre: watch a site, send it a signed command."""
