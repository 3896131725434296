"""The grid server: the hub that fans grids out, and the transports that carry it."""
