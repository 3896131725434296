"""`aerogrid run`: load an app file, restore its grids, consume, serve."""
