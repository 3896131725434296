"""The apps section: the supervised apps, their counters and their controls."""
