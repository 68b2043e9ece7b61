"""What default scrubbing looks for: secret-looking key names and well-known secret formats.

Declared once, as data, so the documented list and the code cannot drift apart
(``describe()`` renders it). Two rules keep ordinary LLM content intact:

- a *key* is scrubbed by its name (``password``, ``api_key``, ``Authorization`` …) wherever it
  appears: headers, query parameters, form and JSON fields, ``"key": value`` and ``key=value``
  pairs inside text;
- a *value* is scrubbed on its own only when it has the shape of a well-known credential
  (``sk-…``, ``AKIA…``, a JWT, ``Bearer …``). The word "password" in a chat message is content.

Speed matters (this runs on every event), and CPython's regex engine is only fast when a
pattern starts with a literal: every format below does, and the "not inside a longer word"
check is done in Python on the rare hit instead of with a leading look-behind.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from functools import lru_cache

# (what, regex over the normalised key: lower case, camelCase split with "_").
SECRET_KEYS: tuple[tuple[str, str], ...] = (
    ("password, passwd, passphrase, pwd", r"pass(?:word|wd|phrase)|(?<![a-z])pwd(?![a-z])"),
    ("secret (client_secret, aws_secret_access_key, …)", r"secret"),
    (
        "auth (Authorization, Proxy-Authorization, X-Auth-Token, oauth…; not author/authors)",
        r"auth(?!ors?(?![a-z]))",
    ),
    ("credential", r"credential"),
    ("private key", r"private[._ -]?key"),
    ("api key (X-Api-Key, api-key, x-goog-api-key, apiKey, …)", r"api[._ -]?key"),
    (
        "access / subscription / signing / encryption / master / license / consumer key",
        r"(?:access|subscription|signing|encryption|master|license|consumer)[._ -]?key",
    ),
    (
        "access / refresh / bearer / id / api / auth / session / security / client / oauth / "
        "personal / app token, and a key named just `token` (not `max_tokens`, `page_token`)",
        r"(?<![a-z])(?:access|refresh|bearer|id|api|auth|session|security|client|oauth|"
        r"personal|private|app|installation)[._ -]?token|^(?:x[._-])?token$",
    ),
    ("session (session_id, sessionid, …)", r"session"),
    ("cookie (Cookie, Set-Cookie)", r"cookie"),
    ("csrf, xsrf", r"[cx]srf"),
    ("jwt", r"(?<![a-z])jwt(?![a-z])"),
    ("ssn, social security", r"(?<![a-z])ssn(?![a-z])|social[._ -]?security"),
    (
        "credit card, card number, cvv / cvc",
        r"credit[._ -]?card|card[._ -]?(?:number|num|no)(?![a-z])|(?<![a-z])cv[vc]\d?(?![a-z])",
    ),
)

# Never scrubbed by key name: not secrets, and scrubbing them would only hurt.
SAFE_KEYS = frozenset({"www-authenticate", "author", "authors", "token_type"})

# Subtrees of model output where key names are content: ``logprobs.content[].token``.
CONTENT_KEYS = frozenset({"logprobs", "top_logprobs"})

# JSON Schema: under ``properties`` the keys name fields (a tool parameter called "password")
# and their dict values are schemas, not secrets.
SCHEMA_KEYS = frozenset({"properties", "patternproperties"})

# Header values that are URLs: scrubbed like the request URL.
URL_HEADERS = frozenset({"location", "content-location", "referer", "origin"})


@dataclass(frozen=True)
class Format:
    """A well-known secret format. ``regex`` starts with a literal; group ``s`` (if any) is the
    secret part; ``word`` means the match must not continue a longer word on its left;
    ``before`` is a character that must precede the match (kept out of the regex so that it
    still starts with a literal)."""

    what: str
    regex: re.Pattern[str]
    word: bool = True
    before: str = ""


def _f(what: str, pattern: str, word: bool = True, before: str = "") -> Format:
    return Format(what, re.compile(pattern), word, before)


_KEYCHARS = r"[A-Za-z0-9_\-]"
FORMATS: tuple[Format, ...] = (
    _f(
        "OpenAI / Anthropic API key (`sk-…`, `sk-proj-…`, `sk-ant-…`), Stripe secret key "
        "(`sk_live_…`)",
        rf"sk(?:-{_KEYCHARS}{{16,}}|_(?:live|test)_[A-Za-z0-9]{{16,}})",
    ),
    _f("Stripe restricted key (`rk_live_…`)", r"rk_(?:live|test)_[A-Za-z0-9]{16,}"),
    _f("AgentTrace API key (`at_live_…`, `at_test_…`)", rf"at_(?:live|test)_{_KEYCHARS}{{4,}}"),
    _f(
        "AWS access key id (`AKIA…`, `ASIA…`), Google API key (`AIza…`)",
        rf"A(?:(?:KIA|SIA|BIA|CCA)[A-Z0-9]{{16}}(?![A-Za-z0-9])|Iza{_KEYCHARS}{{35}})",
    ),
    _f(
        "GitHub token (`ghp_…`, `github_pat_…`)",
        r"g(?:h[pousr]_[A-Za-z0-9]{30,}|ithub_pat_\w{22,})",
    ),
    _f("Slack token (`xoxb-…`)", r"xox[abposr]-[A-Za-z0-9\-]{10,}"),
    _f("JWT (`eyJ….….…`)", r"eyJ[A-Za-z0-9_\-]{8,}\.[A-Za-z0-9_\-]{8,}\.[A-Za-z0-9_\-]*"),
    _f(
        "Bearer token (`Bearer …`, `bearer …`)",
        r"earer +(?P<s>[A-Za-z0-9\-._~+/]{16,}=*)",
        before="Bb",
    ),
    _f(
        "PEM private key block",
        r"-----BEGIN[A-Z ]{0,20}PRIVATE KEY-----[\s\S]*?(?:-----END[A-Z ]{0,20}PRIVATE KEY-----|\Z)",
        word=False,
    ),
    _f(
        "password in a URL (`scheme://user:password@host`)",
        r"://[^\s/?#@:\"'\\]{1,256}:(?P<s>[^\s/?#@\"'\\]{1,256})@",
        word=False,
    ),
)

_KEY_RE = re.compile("|".join(f"(?:{pattern})" for _, pattern in SECRET_KEYS))
_CAMEL = re.compile(r"([a-z0-9])([A-Z])")


def normalize_key(name: str) -> str:
    """``accessToken`` → ``access_token``: one spelling for the key patterns to match."""
    return _CAMEL.sub(r"\1_\2", name).lower()


@lru_cache(maxsize=8192)
def is_secret_key(name: str) -> bool:
    """True if a field, header, query parameter or attribute of this name holds a credential."""
    key = normalize_key(name)
    if key in SAFE_KEYS:
        return False
    return _KEY_RE.search(key) is not None


# -- values -----------------------------------------------------------------------------------


def present_formats(text: str) -> tuple[Format, ...]:
    """The formats that may occur in ``text`` (no word check: an over-approximation, used on a
    whole serialised body to skip checking each of its strings)."""
    return tuple(f for f in FORMATS if f.regex.search(text))


def format_spans(text: str, formats: Iterable[Format] = FORMATS) -> list[tuple[int, int]]:
    """Where secrets of the given formats occur in ``text`` (the secret part only)."""
    spans = []
    for fmt in formats:
        pos = 0
        while True:
            match = fmt.regex.search(text, pos)
            if match is None:
                break
            start = match.start()
            if fmt.before:
                if not start or text[start - 1] not in fmt.before:
                    pos = start + 1
                    continue
                start -= 1
            if fmt.word and start and (text[start - 1].isalnum() or text[start - 1] in "_-"):
                pos = match.start() + 1  # inside a longer word ("task-…"): look again just after
                continue
            spans.append(match.span("s") if "s" in fmt.regex.groupindex else match.span())
            pos = match.end()
    return spans


# One pass over a short string finds anything worth a closer look (a format's prefix or a key
# stem, lower-cased: IGNORECASE makes CPython's engine ~8x slower). Past ~100 characters a
# search per format and per stem is cheaper than this alternation.
_SHORT = 100
_SUSPECT = re.compile(
    r"sk[-_]|rk_|at_(?:live|test)|a(?:kia|sia|bia|cca|iza)|gh[pousr]_|github_pat|xox|eyj|earer"
    r"|-----begin|://[^/\s]*@|pass|pwd|sec|auth|cred|key|token|sess|cookie|srf|jwt|ssn|card|cv"
)


def suspicious(text: str) -> bool:
    """False only if ``text`` can hold no secret format and no secret-looking key."""
    return len(text) > _SHORT or _SUSPECT.search(text.lower()) is not None


# -- "key": value and key=value pairs inside text --------------------------------------------

# Only keys containing one of these stems can be secret (or a step filter's field): finding
# stems first keeps the cost proportional to candidates, not to every key in a stream.
_STEMS = (
    "pass",
    "pwd",
    "sec",
    "auth",
    "cred",
    "key",
    "token",
    "sess",
    "cookie",
    "srf",
    "jwt",
    "ssn",
    "card",
    "cv",
)
_KEY_CHARS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_.-")
_AFTER_QUOTED_KEY = re.compile(r"\s*:\s*")
_VALUE = re.compile(r""""((?:[^"\\\n]|\\.)*)"|'((?:[^'\\\n]|\\.)*)'|([^\s&;,'"<>()\[\]{}]+)""")
_ESCAPED_VALUE = re.compile(r'\\"((?:[^"\\\n]|\\\\.)*?)\\"|([^\s&;,\'"<>()\[\]{}\\]+)')
_LITERALS = frozenset({"null", "true", "false", "None", "True", "False"})


@lru_cache(maxsize=64)
def _stem_regexes(extra: tuple[str, ...]) -> tuple[re.Pattern[str], ...]:
    stems = dict.fromkeys(_STEMS + tuple(s.lower() for s in extra if s))
    return tuple(re.compile(re.escape(s)) for s in stems)


@dataclass(frozen=True)
class Pair:
    key: str
    start: int  # the value, inside its quotes if quoted
    end: int
    json_bare: bool  # an unquoted value after ``"key":`` (a number): replace with a string


def find_pairs(
    text: str, is_secret: Callable[[str], bool], extra_stems: tuple[str, ...] = ()
) -> list[Pair]:
    """``"key": value``, ``'key': value`` and ``key=value`` pairs whose key ``is_secret``.

    JSON escaped inside a JSON string (``\\"password\\": …``, e.g. model-generated tool
    arguments in a stream) deliberately does not match: that is content.
    """
    # A pair needs ``=`` or a quoted key and ``:``; single characters are found at memchr speed.
    if "=" not in text and not (":" in text and ('"' in text or "'" in text)):
        return []
    lowered = text.lower()
    seen: set[int] = set()
    pairs = []
    for stem in _stem_regexes(extra_stems):
        for match in stem.finditer(lowered):
            pair = _pair_at(text, match.start(), match.end(), seen)
            if pair is not None and is_secret(pair.key):
                pairs.append(pair)
    return pairs


def _pair_at(text: str, start: int, end: int, seen: set[int]) -> Pair | None:
    ks, ke, n = start, end, len(text)
    while ks > 0 and start - ks < 64 and text[ks - 1] in _KEY_CHARS:
        ks -= 1
    while ke < n and ke - end < 64 and text[ke] in _KEY_CHARS:
        ke += 1
    if ks in seen:
        return None
    seen.add(ks)
    key = text[ks:ke]
    quote = text[ks - 1] if ks else ""
    if quote == '"' and text[ks - 2 : ks - 1] == "\\" and text[ke : ke + 2] == '\\"':
        # JSON inside a JSON string (an echoed body, an error quoting the request)
        sep = _AFTER_QUOTED_KEY.match(text, ke + 2)
        return _escaped_value(text, key, sep.end()) if sep else None
    if quote in ("'", '"') and text[ke : ke + 1] == quote:
        sep = _AFTER_QUOTED_KEY.match(text, ke + 1)
        return _value(text, key, sep.end(), json_context=True) if sep else None
    if text[ke : ke + 1] == "=" and text[ke + 1 : ke + 2] != "=":
        return _value(text, key, ke + 1, json_context=False)
    return None


def _value(text: str, key: str, at: int, json_context: bool) -> Pair | None:
    match = _VALUE.match(text, at)
    if match is None:
        return None
    for group in (1, 2, 3):
        if match.group(group) is not None:
            if group == 3 and match.group(3) in _LITERALS:
                return None
            start, end = match.span(group)
            return Pair(key, start, end, json_bare=group == 3 and json_context)
    return None  # pragma: no cover


def _escaped_value(text: str, key: str, at: int) -> Pair | None:
    match = _ESCAPED_VALUE.match(text, at)
    if match is None:
        return None
    if match.group(1) is not None:
        return Pair(key, *match.span(1), json_bare=False)
    if match.group(2) in _LITERALS:
        return None
    return Pair(key, *match.span(2), json_bare=False)


def describe() -> str:
    """The documented list of what default scrubbing covers (markdown)."""
    keys = "\n".join(f"- {what}" for what, _ in SECRET_KEYS)
    values = "\n".join(f"- {fmt.what}" for fmt in FORMATS)
    return (
        "Keys (any case; `-`, `_`, `.` and camelCase spellings):\n"
        f"{keys}\n\nValues, wherever they appear:\n{values}\n"
    )
