"""The grid view's `/` filter: every word must match, `column:text` looks in one column."""

from __future__ import annotations

from collections.abc import Sequence

__all__ = ["RowFilter"]


class _Term:
    """One word of a filter: a case-blind substring, of one column or of any."""

    __slots__ = ("column", "needle")

    def __init__(self, needle: str, column: int | None) -> None:
        self.needle = needle
        #: None: key or any cell; -1: the key; n: cell n.
        self.column = column


class RowFilter:
    """A filter's words, parsed once against the grid's columns, matched per row."""

    __slots__ = ("_terms",)

    def __init__(self, text: str, columns: Sequence[str], key_column: str) -> None:
        terms = []
        lowered = {name.casefold(): i for i, name in enumerate(columns)}
        for word in text.split():
            name, colon, needle = word.partition(":")
            column: int | None = None
            if colon and name.casefold() in lowered:
                column = lowered[name.casefold()]
            elif colon and name.casefold() == key_column:
                column = -1
            else:
                needle = word
            terms.append(_Term(needle.casefold(), column))
        self._terms = terms

    def __bool__(self) -> bool:
        """Whether it filters anything out at all (no words: every row matches)."""
        return bool(self._terms)

    def matches(self, key: str, text: tuple[str, ...]) -> bool:
        """Whether a row (its key and its cells as display text) has every word."""
        for term in self._terms:
            needle, column = term.needle, term.column
            if column is None:
                if needle not in key.casefold() and not any(
                    needle in cell.casefold() for cell in text
                ):
                    return False
            elif column < 0:
                if needle not in key.casefold():
                    return False
            elif column >= len(text) or needle not in text[column].casefold():
                return False
        return True
