"""The devkit's terminal UI (Textual) over a running dev loop, grouped by feature.

`app` (the App: its modes and keys), `commands` (the command palette), `session` (what
the TUI needs of the loop and the broker); one package per feature: `apps/`, `logs/`,
`topics/`, `broker/`, `grid/` (the live grid view), `promote/`; `screens/` and `widgets/`
hold what several features share.
"""
