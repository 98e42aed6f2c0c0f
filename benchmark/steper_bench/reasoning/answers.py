"""Cutting a generation to one reasoning sentence; the answer itself is parsed by
`steper_bench.metrics.extract_answer` (one implementation, shared with evaluation)."""

from __future__ import annotations

import re

from steper_bench.metrics import extract_answer

__all__ = ["extract_answer", "first_sentence", "has_answer", "sentence_complete"]

# Words that end with a period without ending a sentence ("St. Louis", "Dr. No", "Jr.").
_ABBREVIATIONS = {
    "mr", "mrs", "ms", "dr", "st", "jr", "sr", "prof", "gen", "col", "lt", "sgt", "capt", "rev",
    "hon", "mt", "ft", "vs", "op", "vol", "ed", "approx", "est", "jan", "feb", "mar", "apr", "aug",
    "sept", "sep", "oct", "nov", "dec", "u.s", "u.k", "e.g", "i.e",
}
# A sentence end: . ? or ! followed by whitespace or the end of the text.
_END = re.compile(r"[.?!](?=\s|$)")
_ANSWER_MARK = re.compile(r"the\s+answer\s+is\s*:?", re.IGNORECASE)
_ANSWER_SENTENCE = re.compile(r"\s*so\s+the\s+answer\s+is\b", re.IGNORECASE)


def _is_abbreviation(text: str, dot: int) -> bool:
    if text[dot] != ".":
        return False
    word = text[:dot].rsplit(None, 1)[-1] if text[:dot].strip() else ""
    word = word.lstrip("(\"'").lower()
    # Initials ("F.W. Murnau", "J. Smith") and the list above.
    return len(word) == 1 and word.isalpha() or word in _ABBREVIATIONS or bool(re.fullmatch(r"([a-z]\.)+[a-z]", word))


def _sentence_end(text: str, start: int = 0) -> int:
    """Index just past the first sentence of text[start:], or len(text)."""
    pos = start
    while True:
        nl = text.find("\n", pos)
        m = _END.search(text, pos)
        if m is None or (nl != -1 and nl < m.start()):
            return nl if nl != -1 else len(text)
        mark = _ANSWER_MARK.search(text, start, m.start())
        # Inside "So the answer is: X" only a period ends the sentence ("Yes!" is a band name).
        if mark and text[m.start()] != ".":
            pos = m.end()
            continue
        if _is_abbreviation(text, m.start()):
            pos = m.end()
            continue
        return m.end()


def _first_end(text: str) -> int:
    """End of the first sentence of an lstripped text, a directly following answer sentence
    included (IRCoT chains end "<fact>. So the answer is: X." -- one step)."""
    end = _sentence_end(text)
    if not _ANSWER_MARK.search(text, 0, end) and end < len(text) and text[end] != "\n":
        if _ANSWER_SENTENCE.match(text, end):
            end = _sentence_end(text, end + 1)
    return end


def first_sentence(text: str) -> str:
    """The first sentence of a generation, keeping a directly following "So the answer is: X."

    Ends at ". ", "? ", "! " or a newline; never inside the answer clause; a simple
    abbreviation list keeps "St. Louis" and "F.W. Murnau" whole.
    """
    text = text.lstrip()
    return " ".join(text[: _first_end(text)].split()) if text else ""


def sentence_complete(text: str) -> bool:
    """Whether a partial generation already holds its whole first sentence (a stopping rule):
    a newline ended it, or something follows it that cannot become "So the answer is"."""
    text = text.lstrip()
    end = _first_end(text)
    if end < len(text) and text[end] == "\n":
        return True
    rest = " ".join(text[end:].split()).lower()
    return bool(rest) and not _ANSWER_LEAD.startswith(rest)


_ANSWER_LEAD = "so the answer is"


def has_answer(sentence: str) -> bool:
    return extract_answer(sentence) is not None
