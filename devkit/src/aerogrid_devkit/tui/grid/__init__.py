"""The live grid view: its feed (`feed`), its data (`model`), the widget that draws it
(`table`) and the screen around them (`screen`)."""
