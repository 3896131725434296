"""Screens shared by every feature: the section base, the yes/no dialog, the help."""
