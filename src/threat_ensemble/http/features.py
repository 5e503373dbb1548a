"""From raw HTTP traffic to feature rows: parse raw request dumps (as in CSIC 2010) and access logs
(common and combined format), then turn every request into one row of numeric features plus two
text columns (``method``, ``file_extension``) that the trainer one-hot encodes.

Files are read as bytes and decoded latin-1, so every byte is one character: no byte is ever a
decoding error and ``Content-Length`` counts stay exact. Features a format does not record are
filled with :data:`MISSING` (-1) for numbers, never guessed; see :data:`FEATURES` for each column's
meaning and fill value.

Parsing walks the text once (linear in its length); every feature is then computed with pyarrow
string kernels and numpy over whole columns, text statistics once per distinct value, and the
per-client windows with one sort and ``searchsorted``.
"""

from __future__ import annotations

import bisect
import ipaddress
import re
import warnings
import zlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import unquote, unquote_plus

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from threat_ensemble.data.tables import gunzip_bounded
from threat_ensemble.errors import InputError
from threat_ensemble.http import FORMATS, WINDOW_SCOPES
from threat_ensemble.limits import DEFAULT_MAX_DECOMPRESSED_MB

MISSING = -1
NO_EXTENSION = "none"
OTHER_METHOD = "OTHER"
KNOWN_METHODS = ("GET", "POST", "PUT", "DELETE", "HEAD", "OPTIONS", "PATCH", "TRACE", "CONNECT")
WINDOWS = {"1m": 60.0, "5m": 300.0, "10m": 600.0}

# name -> (meaning, value when the format lacks the field). The order is the column order.
FEATURES: dict[str, tuple[str, str]] = {
    "method": ("HTTP method (text): GET, POST, PUT, DELETE, HEAD, OPTIONS, PATCH, TRACE, CONNECT or OTHER", "-"),
    "path_depth": ("non-empty `/`-separated segments of the raw path (`/a/b/c.php` -> 3)", "-"),
    "path_length": ("characters in the raw path", "-"),
    "path_entropy": ("Shannon entropy of the raw path's characters, bits per character", "-"),
    "query_length": ("characters in the raw query string (after `?`, before `#`)", "-"),
    "query_param_count": ("non-empty `&`-separated query parameters", "-"),
    "pct_encoded_chars": ("`%XX` escapes in the raw path and query", "-"),
    "double_encoded": ("`%25XX` escapes (an encoded `%` followed by hex) in the raw path and query", "-"),
    "status_code": ("response status", "-1 (raw dumps)"),
    "status_class": ("status // 100", "-1 (raw dumps)"),
    "response_size": ("response bytes (`-` in a log counts as 0)", "-1 (raw dumps)"),
    "hour": ("hour of the request in the log's local time, 0-23", "-1 (raw dumps)"),
    "weekday": ("day of the week in local time, 0 = Monday", "-1 (raw dumps)"),
    "is_weekend": ("1 on Saturday or Sunday", "-1 (raw dumps)"),
    "ua_length": ("characters in the User-Agent (0 when the client sent none)", "-1 (common logs)"),
    "ua_entropy": ("Shannon entropy of the User-Agent, bits per character", "-1 (common logs)"),
    "is_known_bot": ("1 when the User-Agent names a known crawler, bot or scanner tool", "-1 (common logs)"),
    "is_scanner_agent": (
        "1 when the User-Agent names a scanner or attack tool (sqlmap, Nikto, ...)",
        "-1 (common logs)",
    ),
    "attack_pattern": ("1 when the percent-decoded path and query match an attack signature", "-"),
    "special_char_ratio": (
        "share of characters of the decoded path and query outside letters, digits, space and `/._-=&?`",
        "-",
    ),
    "file_extension": ("extension of the last path segment, lower case (text); `none` when there is none", "-"),
    "is_private_ip": (
        "1 for a private (RFC 1918, 100.64/10, fc00::/7), loopback or link-local client address, else 0; "
        "-1 for a host name",
        "-1 (raw dumps)",
    ),
    "header_count": ("request header lines", "-1 (access logs)"),
    "header_attack_pattern": (
        "1 when header values (raw: every header; combined: User-Agent and Referer) match an attack signature",
        "-1 (common logs)",
    ),
    "query_alpha_ratio": ("share of letters in the decoded query (0 when there is no query)", "-"),
    "query_digit_ratio": ("share of digits in the decoded query", "-"),
    "query_space_ratio": ("share of whitespace in the decoded query (`+` decodes to a space)", "-"),
    "query_symbol_ratio": ("share of other characters (punctuation, symbols, controls, non-ASCII)", "-"),
    "body_length": ("characters in the request body", "-1 (access logs)"),
    "body_entropy": ("Shannon entropy of the raw body, bits per character (0 when empty)", "-1 (access logs)"),
    "body_param_count": ('form fields (`name=`) plus JSON keys (`"name":`) in the body', "-1 (access logs)"),
    "body_attack_pattern": ("1 when the decoded body matches an attack signature", "-1 (access logs)"),
    "body_pct_encoded": ("`%XX` escapes in the raw body", "-1 (access logs)"),
    "body_double_encoded": ("`%25XX` escapes in the raw body", "-1 (access logs)"),
    "body_nonprintable": ("control characters (other than tab, CR, LF) in the decoded body", "-1 (access logs)"),
    "body_alpha_ratio": ("share of letters in the decoded body (0 when empty)", "-1 (access logs)"),
    "body_digit_ratio": ("share of digits in the decoded body", "-1 (access logs)"),
    "body_space_ratio": ("share of whitespace in the decoded body", "-1 (access logs)"),
    "body_symbol_ratio": ("share of other characters in the decoded body", "-1 (access logs)"),
    "req_count_1m": ("requests of this client in the minute up to and including this one", "-1 (raw dumps)"),
    "req_count_5m": ("requests of this client in the last 5 minutes", "-1 (raw dumps)"),
    "req_count_10m": ("requests of this client in the last 10 minutes", "-1 (raw dumps)"),
    "error_rate_5m": ("share of this client's requests in the last 5 minutes with status >= 400", "-1 (raw dumps)"),
    "distinct_paths_5m": ("distinct paths this client asked for in the last 5 minutes", "-1 (raw dumps)"),
    "distinct_ua_10m": ("distinct User-Agents this client sent in the last 10 minutes", "-1 (raw dumps, common logs)"),
    "iat_mean": (
        "mean seconds between this client's consecutive requests in the last 10 minutes",
        "-1 (raw dumps, or fewer than 2 requests in the window)",
    ),
    "iat_std": ("standard deviation of those gaps", "-1 (raw dumps, or fewer than 2 requests in the window)"),
}
FEATURE_COLUMNS = list(FEATURES)
TEXT_COLUMNS = ("method", "file_extension")
FLOAT_COLUMNS = frozenset(
    c for c in FEATURE_COLUMNS if c.endswith(("_entropy", "_ratio")) or c in ("error_rate_5m", "iat_mean", "iat_std")
)
WINDOW_COLUMNS = FEATURE_COLUMNS[FEATURE_COLUMNS.index("req_count_1m") :]

# Signatures of the attack families the README names. RE2 syntax (pyarrow), matched case-insensitively
# on percent-decoded text. They are deliberately not exhaustive: the flag is a feature, not a verdict.
ATTACK_SIGNATURES: dict[str, str] = {
    "sqli": (
        r"\bunion\b[\s/*+()]+(?:all[\s/*+()]+)?select\b|\bselect\b.{1,80}\bfrom\b|"
        r"\b(?:or|and)\b\s*\(?\s*['\"]?\w+['\"]?\s*(?:=|like)\s*['\"]?\w+|'\s*(?:--|#|/\*|;)|"
        r"\b(?:sleep|benchmark|pg_sleep|extractvalue|updatexml)\s*\(|\bwaitfor\s+delay\b|"
        r"information_schema|\bxp_cmdshell\b|;\s*(?:drop|insert|update|delete|shutdown|exec)\b|\bdrop\s+table\b"
    ),
    "xss": (
        r"<\s*/?\s*(?:script|iframe|svg|img|body|object|embed|frame|video|audio)\b|javascript\s*:|vbscript\s*:|"
        r"\bon(?:error|load|mouseover|focus|click|toggle|begin|start)\s*=|\balert\s*[(`]|"
        r"document\.(?:cookie|location|domain)|\beval\s*\("
    ),
    "traversal": r"\.\.[/\\]|/etc/(?:passwd|shadow|hosts|group)\b|\b(?:win|boot)\.ini\b|/proc/self/|c:\\windows",
    "cmdi": (
        r"(?:[;|`]|&&|\|\||\$\()\s*(?:cat|ls|id|whoami|uname|wget|curl|nc|ncat|bash|sh|ping|nslookup|"
        r"powershell|cmd|rm|echo|sleep)(?:\s|$|[;|&`)])"
    ),
    "jndi": r"\$\{\s*(?:jndi|lower|upper|env|sys|date|::-)[^}]*",
    "ssrf": (
        r"\b(?:file|gopher|dict|ldap|tftp|jar|netdoc)://|169\.254\.169\.254|metadata\.google\.internal|"
        r"\bhttps?://(?:127\.\d+\.\d+\.\d+|localhost|0\.0\.0\.0|\[::1?\]|10\.\d+\.\d+\.\d+|192\.168\.\d+\.\d+|"
        r"172\.(?:1[6-9]|2\d|3[01])\.\d+\.\d+)"
    ),
    "probe": r"\x00|<\?php|/\.env\b|/\.git/|/\.htaccess|/wp-(?:admin|login)|phpmyadmin|/web-inf/|/cgi-bin/",
}
ATTACK_REGEX = "|".join(f"(?:{p})" for p in ATTACK_SIGNATURES.values())
# Headers carry host names and referring URLs by design (``Referer: http://localhost/...``), so the
# SSRF and probe signatures would flag ordinary requests there.
HEADER_ATTACK_REGEX = "|".join(f"(?:{ATTACK_SIGNATURES[k]})" for k in ("sqli", "xss", "traversal", "cmdi", "jndi"))
# Known crawlers and monitors, then tools that only scanners and attackers send.
SCANNER_AGENTS = (
    r"sqlmap|nikto|nmap|masscan|zgrab|nuclei|dirbuster|gobuster|dirb\b|ffuf|wfuzz|wpscan|acunetix|"
    r"nessus|openvas|w3af|burp|havij|netsparker|qualys|zap/|arachni|skipfish|commix|hydra"
)
BOT_AGENTS = (
    r"bot\b|bot/|crawler|spider|slurp|googlebot|bingbot|yandex|baiduspider|duckduck|facebookexternalhit|"
    r"uptimerobot|pingdom|statuscake|ahrefs|semrush|applebot|petalbot"
)

_METHOD_WORDS = "|".join(KNOWN_METHODS)
# A request line; it may end the file without a newline.
_REQUEST_LINE = re.compile(r"([A-Z][A-Z_-]{0,19})[ \t]+(\S+)[ \t]+HTTP/(\d(?:\.\d)?)[ \t]*(?:\r?\n|\r?\Z)")
# Where a request seems to start: a request line, or a known method and a space (broken ones included).
_START = rf"(?:[A-Z][A-Z_-]{{0,19}}[ \t]+\S+[ \t]+HTTP/\d|(?:{_METHOD_WORDS})[ \t])"
_START_HERE = re.compile(_START)
_NEXT_START = re.compile(r"\n" + _START)  # a leading literal lets the regex engine skip ahead fast
_BLANK_LINE = re.compile(r"\n[ \t]*\r?\n")
_CONTENT_LENGTH = re.compile(r"^content-length[ \t]*:[ \t]*(\d+)", re.I | re.M)
_WHITESPACE = re.compile(r"\s*")

_LOG_PREFIX = (
    r"^(?P<client>\S+) \S+ \S+ \[(?P<time>[^\]]+)\] "
    r'"(?P<request>(?:[^"\\]|\\.)*)" (?P<status>\d{3}|-) (?P<size>\d+|-)'
)
LOG_PATTERNS = {
    "common": _LOG_PREFIX + r"(?P<rest>.*)$",
    "combined": _LOG_PREFIX + r' "(?P<referer>(?:[^"\\]|\\.)*)" "(?P<ua>(?:[^"\\]|\\.)*)"(?P<rest>.*)$',
}
_LOG_REGEX = {name: re.compile(p) for name, p in LOG_PATTERNS.items()}
_REQUEST_FIELD = r"^(?P<method>[A-Za-z][A-Za-z_-]*) +(?P<target>.*?)(?: +(?P<proto>HTTP/[0-9.]+))?\s*$"
_TARGET = r"^(?:[A-Za-z][A-Za-z0-9+.-]*://[^/?#]*)?(?P<path>[^?#]*)(?:\?(?P<query>[^#]*))?"
_LOG_ESCAPE = re.compile(r"\\x([0-9A-Fa-f]{2})|\\(.)")
_CONTROL_ESCAPES = {"n": "\n", "r": "\r", "t": "\t"}

# Python's ``is_private`` also counts documentation and reserved ranges; these are the internal ones.
_PRIVATE_NETS = tuple(
    ipaddress.ip_network(n) for n in ("10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "100.64.0.0/10", "fc00::/7")
)
DETECT_LINES = 200
DETECT_BYTES = 1 << 20
MAX_OFFSET_HOURS = 14  # time zones run from -12:00 to +14:00


def _byte_table(chars: str = "", ranges: Iterable[tuple[int, int]] = ()) -> np.ndarray:
    table = np.zeros(256, dtype=bool)
    for c in chars:
        table[ord(c)] = True
    for lo, hi in ranges:
        table[lo : hi + 1] = True
    return table


_ALPHA = _byte_table(ranges=[(65, 90), (97, 122)])
_DIGIT = _byte_table(ranges=[(48, 57)])
_SPACE = _byte_table(" \t\n\r\x0b\x0c")
_SYMBOL = ~(_ALPHA | _DIGIT | _SPACE)
_URL_SPECIAL = ~(_ALPHA | _DIGIT | _byte_table(" /._-=&?"))
_NONPRINTABLE = _byte_table(ranges=[(0, 8), (11, 12), (14, 31), (127, 127)])
_CLASSES = {"alpha": _ALPHA, "digit": _DIGIT, "space": _SPACE, "symbol": _SYMBOL}


class FeaturizeWarning(UserWarning):
    """A file was read, but some requests in it were skipped or kept incomplete."""


@dataclass
class Requests:
    """Parsed requests of one file, one entry per request in file order. ``None`` marks a field the
    format does not record, which the features fill with :data:`MISSING` instead of guessing."""

    source: str
    fmt: str
    method: list[str]
    target: list[str]
    user_agent: list[str] | None = None
    header_text: list[str] | None = None
    header_count: np.ndarray | None = None
    body: list[str] | None = None
    status: np.ndarray | None = None
    size: np.ndarray | None = None
    client: list[str] | None = None
    local_time: pd.DatetimeIndex | None = None
    epoch: np.ndarray | None = None
    n_malformed: int = 0
    n_incomplete: int = 0

    def __len__(self) -> int:
        return len(self.method)


# ----------------------------------------------------------------------------- reading and detection
def read_text(path: str | Path, max_decompressed_mb: int = DEFAULT_MAX_DECOMPRESSED_MB) -> str:
    """The file's bytes as latin-1 text (gzip is unpacked; a UTF-8 byte-order mark is dropped)."""
    p = Path(path)
    try:
        if not p.is_file() and p.exists():
            raise InputError(f"{p}: not a file")
        data = p.read_bytes()
    except FileNotFoundError:
        raise InputError(f"{p}: no such file") from None
    except PermissionError:
        raise InputError(f"{p}: cannot be read (permission denied)") from None
    except OSError as exc:  # a symbolic-link loop, a device error
        raise InputError(f"{p}: cannot be read ({exc.strerror or exc})") from None
    return decode_bytes(data, str(p), max_decompressed_mb)


def decode_bytes(data: bytes, source: str, max_decompressed_mb: int = DEFAULT_MAX_DECOMPRESSED_MB) -> str:
    """A file's bytes as latin-1 text, gzip unpacked (up to the limit); InputError naming ``source``
    for a damaged or truncated gzip file."""
    if data[:2] == b"\x1f\x8b":
        try:
            data = gunzip_bounded(data, max_decompressed_mb, source)
        except (OSError, EOFError, zlib.error) as exc:
            raise InputError(f"{source}: damaged gzip file ({exc})") from None
    return as_text(data)


def as_text(data: bytes | str) -> str:
    """Bytes (or a str, re-encoded UTF-8) as latin-1 text, one character per byte."""
    if isinstance(data, str):
        data = data.encode("utf-8", "surrogateescape")
    if data.startswith(b"\xef\xbb\xbf"):
        data = data[3:]
    return data.decode("latin-1")


_LONE_CR = re.compile(r"\r(?!\n)")


def log_lines(text: str) -> str:
    """``text`` with every line ending a ``\n`` (``\r\n`` keeps its ``\r``, trimmed later): a lone
    ``\r`` (old Mac files, some exporters) ends a line too, instead of gluing a file into one line.
    One character for one, so offsets do not move."""
    return _LONE_CR.sub("\n", text) if "\r" in text else text


def detect_format(text: str, source: str) -> str:
    """``raw``, ``common`` or ``combined`` from the first lines; InputError naming the file otherwise."""
    head = log_lines(text[:DETECT_BYTES])
    lines = [line.rstrip("\r") for line in head.split("\n")]
    cut = len(text) > DETECT_BYTES  # the head's last line may go on past it
    first = next((i for i, line in enumerate(lines) if line.strip()), None)
    if cut and first == len(lines) - 1:
        raise InputError(
            f"{source}: its first line is longer than the {DETECT_BYTES:,} characters read to tell its format (no "
            f"line ending in them); a request line or an access-log line is far shorter (first characters: "
            f"{lines[first][:60]!r})"
        )
    lines = [line for line in lines if line.strip()][:DETECT_LINES]
    if not lines:
        raise InputError(f"{source}: no HTTP request found (the file is empty)")
    n_combined = sum(1 for line in lines if _LOG_REGEX["combined"].match(line))
    n_common = sum(1 for line in lines if _LOG_REGEX["common"].match(line))
    if n_combined * 2 >= len(lines):
        return "combined"
    if n_common * 2 >= len(lines):
        return "common"
    if any(_REQUEST_LINE.match(line + "\n") for line in lines):
        return "raw"
    first = lines[0][:60]
    raise InputError(f"{source}: not a raw HTTP request dump or a common/combined access log (first line: {first!r})")


# ----------------------------------------------------------------------------- raw request dumps
def parse_raw(text: str, source: str = "<text>") -> Requests:
    """Split a raw dump into requests: request line, headers up to a blank line, then a body of
    ``Content-Length`` characters, or without it the text up to the next request line. Text that
    does not start with a request line is skipped up to the next one and counted as malformed."""
    starts = [m.start() + 1 for m in _NEXT_START.finditer(text)]
    n = len(text)
    methods: list[str] = []
    targets: list[str] = []
    headers: list[str] = []
    bodies: list[str] = []
    malformed = incomplete = 0
    pos = 0
    while True:
        pos = _WHITESPACE.match(text, pos).end()
        if pos >= n:
            break
        k = bisect.bisect_right(starts, pos)
        limit = starts[k] if k < len(starts) else n  # the next request start after this one
        line = _REQUEST_LINE.match(text, pos) if _START_HERE.match(text, pos) else None
        if line is None:
            malformed += 1
            pos = limit
            continue
        head_start = line.end()
        blank = _BLANK_LINE.search(text, head_start - 1, limit) if head_start < n else None
        if blank is None:  # no blank line before the next request or the end: headers only
            head = text[head_start:limit]
            body_start = limit
        else:
            head = text[head_start : blank.start() + 1]
            body_start = blank.end()
        length = _CONTENT_LENGTH.search(head)
        if length is not None:
            digits = length.group(1)  # 5,000 digits would exceed int(); anything past 18 is past the end
            end = body_start + int(digits) if len(digits) <= 18 else n + 1
            if end > limit:
                incomplete += 1
                end = limit
            body = text[body_start:end]
            pos = end
        else:
            body = text[body_start:limit].strip("\r\n")
            pos = limit
        methods.append(line.group(1))
        targets.append(line.group(2))
        headers.append(head)
        bodies.append(body)
    head_arr = pa.array(headers, type=pa.large_string())
    ua = pc.extract_regex(head_arr, r"(?im)^user-agent[ \t]*:[ \t]*(?P<ua>[^\r\n]*?)[ \t]*\r?$")
    user_agent = pc.fill_null(pc.struct_field(ua, [0]), "").to_pylist() if len(headers) else []
    count = pc.count_substring_regex(head_arr, r"(?m)^[^\r\n:]+:[^\r\n]*") if len(headers) else pa.array([], pa.int64())
    return Requests(
        source=source,
        fmt="raw",
        method=methods,
        target=targets,
        user_agent=user_agent,
        header_text=headers,
        header_count=np.asarray(count, dtype=np.int64),
        body=bodies,
        n_malformed=malformed,
        n_incomplete=incomplete,
    )


# ----------------------------------------------------------------------------- access logs
def parse_access_log(text: str, fmt: str, source: str = "<text>") -> Requests:
    """Parse common or combined log lines column-wise; lines that do not fit are counted as malformed."""
    if fmt not in LOG_PATTERNS:
        raise ValueError(f"unknown log format {fmt!r}")
    lines = pa.array(log_lines(text).split("\n"), type=pa.large_string())
    lines = pc.utf8_rtrim(lines, characters="\r")
    nonblank = pc.invert(pc.match_substring_regex(lines, r"^\s*$"))
    lines = lines.filter(nonblank)
    parts = pc.extract_regex(lines, LOG_PATTERNS[fmt])
    ok = np.asarray(parts.is_valid())
    # a size beyond int64 (19+ digits) makes the line malformed, not the whole file unreadable
    size_digits = pc.utf8_length(pc.struct_field(parts, ["size"]).fill_null(""))
    ok &= np.asarray(pc.less_equal(size_digits, 18).fill_null(False), dtype=bool)
    time_text = pd.Series(np.asarray(pc.struct_field(parts, ["time"]).fill_null("")), dtype=object)
    local = pd.to_datetime(time_text.str.slice(0, 20), format="%d/%b/%Y:%H:%M:%S", errors="coerce")
    ok &= local.notna().to_numpy()
    # the offset: none (as some servers write), or +hhmm / +hh:mm within what time zones use; any
    # other (+9999, trailing text) makes the line malformed, never a time shifted by days
    offset = time_text.str.slice(20).str.extract(r"^(?:\s+([+-])(\d\d):?(\d\d))?\s*$")
    hours = pd.to_numeric(offset[1]).fillna(0).to_numpy(dtype=np.float64)
    minutes = pd.to_numeric(offset[2]).fillna(0).to_numpy(dtype=np.float64)
    matched = offset[0].notna().to_numpy() | (time_text.str.slice(20).str.strip() == "").to_numpy()
    ok &= matched & (hours <= MAX_OFFSET_HOURS) & (minutes < 60)
    n_malformed = int(len(lines) - ok.sum())
    keep = pa.array(ok)
    parts = parts.filter(keep)
    local = pd.DatetimeIndex(local[ok])
    sign = np.where(offset[0].to_numpy()[ok] == "-", -1.0, 1.0)
    epoch = local.as_unit("s").asi8.astype(np.float64) - sign * (hours[ok] * 3600 + minutes[ok] * 60)

    def column(name: str) -> pa.Array:
        return pc.struct_field(parts, [name])

    request = _unescape_log(column("request"))
    fields = pc.extract_regex(pa.array(request, type=pa.large_string()), _REQUEST_FIELD)
    method = pc.utf8_upper(pc.fill_null(pc.struct_field(fields, [0]), OTHER_METHOD))
    target = pc.fill_null(pc.struct_field(fields, [1]), "")
    status = pc.cast(pc.if_else(pc.equal(column("status"), "-"), str(MISSING), column("status")), pa.int64())
    size = pc.cast(pc.if_else(pc.equal(column("size"), "-"), "0", column("size")), pa.int64())
    user_agent = header_text = None
    if fmt == "combined":
        ua = [("" if v == "-" else v) for v in _unescape_log(column("ua"))]
        referer = [("" if v == "-" else v) for v in _unescape_log(column("referer"))]
        user_agent = ua
        header_text = [f"{a}\n{b}" for a, b in zip(ua, referer, strict=True)]
    return Requests(
        source=source,
        fmt=fmt,
        method=method.to_pylist(),
        target=target.to_pylist(),
        user_agent=user_agent,
        header_text=header_text,
        status=np.asarray(status, dtype=np.int64),
        size=np.asarray(size, dtype=np.int64),
        client=column("client").to_pylist(),
        local_time=local,
        epoch=np.asarray(epoch, dtype=np.float64),
        n_malformed=n_malformed,
    )


def _unescape_log(values: pa.Array) -> list[str]:
    """Undo the servers' escaping in quoted log fields: ``\\xHH`` (nginx), ``\\"``, ``\\\\``, ``\\n``
    (Apache); only the few values with a backslash are touched."""
    out = values.to_pylist()
    if len(out) == 0:
        return out
    for i in np.flatnonzero(np.asarray(pc.match_substring(values, "\\"), dtype=bool)):
        out[i] = _LOG_ESCAPE.sub(_unescape_one, out[i])
    return out


def _unescape_one(m: re.Match) -> str:
    if m.group(1):
        return chr(int(m.group(1), 16))
    return _CONTROL_ESCAPES.get(m.group(2), m.group(2))


# ----------------------------------------------------------------------------- features
def extract_features(req: Requests, windows: bool = True) -> pd.DataFrame:
    """One row per request, columns :data:`FEATURE_COLUMNS`, in the order of the requests. With
    ``windows=False`` the per-client window columns are left :data:`MISSING`, for a caller that
    computes them over several files (:func:`stream_windows`, the Spark featurizer)."""
    n = len(req)
    out: dict[str, np.ndarray] = {}
    method = np.asarray(req.method, dtype=object)
    out["method"] = np.where(np.isin(method, KNOWN_METHODS), method, OTHER_METHOD).astype(object)

    parts = pc.extract_regex(pa.array(req.target, type=pa.large_string()), _TARGET)
    path_arr = pc.fill_null(pc.struct_field(parts, ["path"]), "")
    query_arr = pc.fill_null(pc.struct_field(parts, ["query"]), "")
    path = path_arr.to_pylist()
    query = query_arr.to_pylist()
    has_query = np.asarray(pc.greater(pc.utf8_length(query_arr), 0), dtype=bool)
    relative = pc.if_else(
        has_query, pc.binary_join_element_wise(path_arr, query_arr, pa.scalar("?", pa.large_string())), path_arr
    )

    path_stats = _text_stats(path, entropy=True)
    out["path_depth"] = _count(path_arr, r"[^/]+")
    out["path_length"] = path_stats["length"]
    out["path_entropy"] = path_stats["entropy"]
    out["query_length"] = np.asarray(pc.utf8_length(query_arr), dtype=np.int64)
    out["query_param_count"] = _count(query_arr, r"[^&]+")
    out["pct_encoded_chars"] = _count(relative, r"%[0-9A-Fa-f]{2}")
    out["double_encoded"] = _count(relative, r"%25[0-9A-Fa-f]{2}")

    if req.status is not None:
        status = np.asarray(req.status, dtype=np.int64)
        out["status_code"] = status
        out["status_class"] = np.where(status >= 0, status // 100, MISSING)
        out["response_size"] = np.asarray(req.size, dtype=np.int64)
    else:
        for name in ("status_code", "status_class", "response_size"):
            out[name] = _missing(n)
    if req.local_time is not None:
        weekday = np.asarray(req.local_time.day_of_week, dtype=np.int64)
        out["hour"] = np.asarray(req.local_time.hour, dtype=np.int64)
        out["weekday"] = weekday
        out["is_weekend"] = (weekday >= 5).astype(np.int64)
    else:
        for name in ("hour", "weekday", "is_weekend"):
            out[name] = _missing(n)

    if req.user_agent is not None:
        ua_arr = pa.array(req.user_agent, type=pa.large_string())
        ua_stats = _text_stats(req.user_agent, entropy=True)
        scanner = _flag(ua_arr, SCANNER_AGENTS)
        out["ua_length"] = ua_stats["length"]
        out["ua_entropy"] = ua_stats["entropy"]
        out["is_known_bot"] = np.maximum(_flag(ua_arr, BOT_AGENTS), scanner)
        out["is_scanner_agent"] = scanner
    else:
        for name in ("ua_length", "ua_entropy", "is_known_bot", "is_scanner_agent"):
            out[name] = _missing(n)

    decoded_path = _decode(path, plus=False)
    decoded_query = _decode(query, plus=True)
    decoded_url = [f"{p}?{q}" if h else p for p, q, h in zip(decoded_path, decoded_query, has_query, strict=True)]
    url_stats = _text_stats(decoded_url, classes={"special": _URL_SPECIAL})
    out["attack_pattern"] = _flag(pa.array(decoded_url, type=pa.large_string()), ATTACK_REGEX)
    out["special_char_ratio"] = _ratio(url_stats["special"], url_stats["length"])
    ext = pc.extract_regex(path_arr, r"^(?:.*/)?[^/]*\.(?P<ext>[A-Za-z0-9]{1,8})$")
    out["file_extension"] = np.asarray(
        pc.fill_null(pc.utf8_lower(pc.struct_field(ext, [0])), NO_EXTENSION), dtype=object
    )
    out["is_private_ip"] = _private_ip(req.client) if req.client is not None else _missing(n)

    out["header_count"] = np.asarray(req.header_count, dtype=np.int64) if req.header_count is not None else _missing(n)
    if req.header_text is not None:
        decoded_headers = _decode(req.header_text, plus=False)
        headers_arr = pa.array(decoded_headers, type=pa.large_string())
        out["header_attack_pattern"] = _flag(headers_arr, HEADER_ATTACK_REGEX)
    else:
        out["header_attack_pattern"] = _missing(n)

    query_stats = _text_stats(decoded_query, classes=_CLASSES)
    for name in _CLASSES:
        out[f"query_{name}_ratio"] = _ratio(query_stats[name], query_stats["length"])

    if req.body is not None:
        body_arr = pa.array(req.body, type=pa.large_string())
        decoded_body = _decode(req.body, plus=True)
        body_stats = _text_stats(req.body, entropy=True)
        decoded_stats = _text_stats(decoded_body, classes={**_CLASSES, "nonprintable": _NONPRINTABLE})
        out["body_length"] = body_stats["length"]
        out["body_entropy"] = body_stats["entropy"]
        out["body_param_count"] = _count(body_arr, r"(?:^|&)[^&=\s]+=[^&]*") + _count(body_arr, r'"[^"\\]{1,64}"\s*:')
        out["body_attack_pattern"] = _flag(pa.array(decoded_body, type=pa.large_string()), ATTACK_REGEX)
        out["body_pct_encoded"] = _count(body_arr, r"%[0-9A-Fa-f]{2}")
        out["body_double_encoded"] = _count(body_arr, r"%25[0-9A-Fa-f]{2}")
        out["body_nonprintable"] = decoded_stats["nonprintable"]
        for name in _CLASSES:
            out[f"body_{name}_ratio"] = _ratio(decoded_stats[name], decoded_stats["length"])
    else:
        body_names = [c for c in FEATURE_COLUMNS if c.startswith("body_")]
        for name in body_names:
            out[name] = _missing(n)

    if windows and has_windows(req):
        out.update(window_features(req.client, req.epoch, out["status_code"], path, req.user_agent))
    else:
        for name in WINDOW_COLUMNS:
            out[name] = _missing(n)
    return pd.DataFrame({name: _typed(name, out[name]) for name in FEATURE_COLUMNS})


def has_windows(req: Requests) -> bool:
    """Whether the format records a client and a time (access logs), so windows can be computed."""
    return req.epoch is not None and req.client is not None


def window_inputs(req: Requests) -> pd.DataFrame:
    """What the per-client windows of an access log read, one row per request: ``client``,
    ``epoch`` (seconds, UTC), ``status``, ``path`` (the raw path) and ``user_agent`` (None for a
    common log, which records none)."""
    assert has_windows(req), f"{req.source}: {req.fmt} requests have no client and time"
    parts = pc.extract_regex(pa.array(req.target, type=pa.large_string()), _TARGET)
    return pd.DataFrame(
        {
            "client": np.asarray(req.client, dtype=object),
            "epoch": np.asarray(req.epoch, dtype=np.float64),
            "status": np.asarray(req.status, dtype=np.int64),
            "path": np.asarray(pc.fill_null(pc.struct_field(parts, ["path"]), ""), dtype=object),
            "user_agent": np.asarray(req.user_agent, dtype=object) if req.user_agent is not None else None,
        }
    )


def stream_windows(requests: Sequence[Requests], frames: Sequence[pd.DataFrame]) -> None:
    """Fill the window columns of ``frames`` (each :func:`extract_features` of the matching file
    of ``requests``, made with ``windows=False``) as if the files were one stream: a client's
    windows run across files (rotated logs of one server), ordered by time. Files of different
    formats are separate streams, and formats without client and time keep :data:`MISSING`."""
    for fmt in dict.fromkeys(r.fmt for r in requests):
        group = [i for i, r in enumerate(requests) if r.fmt == fmt and has_windows(r)]
        if not group:
            continue
        inputs = pd.concat([window_inputs(requests[i]) for i in group], ignore_index=True)
        ua = inputs["user_agent"].to_numpy() if fmt == "combined" else None
        client, epoch, status, path = (inputs[c].to_numpy() for c in ("client", "epoch", "status", "path"))
        columns = window_features(client, epoch, status, path, ua)
        start = 0
        for i in group:
            stop = start + len(frames[i])
            for name, values in columns.items():
                frames[i][name] = _typed(name, values[start:stop])
            start = stop


def _typed(name: str, values: np.ndarray) -> np.ndarray:
    """Stable dtypes whatever the format: text columns object, ratios float64, counts int64."""
    if name in TEXT_COLUMNS:
        return np.asarray(values, dtype=object)
    return np.asarray(values, dtype=np.float64 if name in FLOAT_COLUMNS else np.int64)


def window_features(
    client: Sequence[str],
    epoch: np.ndarray,
    status: np.ndarray,
    path: Sequence[str],
    user_agent: Sequence[str] | None,
) -> dict[str, np.ndarray]:
    """Per-client features over the trailing windows ``(t - w, t]`` of each request (requests in the
    same second count as one moment, so the result does not depend on the input order).

    Counts come from ``searchsorted`` on one key that sorts by client, then time. Distinct values
    in a window use disjoint intervals: each occurrence of a (client, value) pair covers
    ``[t, min(t + w, next occurrence))``, so the distinct count at time T is the number of
    intervals started by T minus the number ended by T.
    """
    n = len(epoch)
    if n == 0:
        empty = {f"req_count_{k}": np.zeros(0, np.int64) for k in WINDOWS}
        names = ("error_rate_5m", "distinct_paths_5m", "distinct_ua_10m", "iat_mean", "iat_std")
        return {**empty, **{name: np.zeros(0) for name in names}}
    ccode = pd.factorize(np.asarray(client, dtype=object))[0].astype(np.int64)
    order = np.lexsort((epoch, ccode))
    c = ccode[order]
    t = np.asarray(epoch, dtype=np.float64)[order]
    t0 = float(t.min())
    span = float(t.max() - t0) + 2 * max(WINDOWS.values()) + 10.0
    key = c * span + (t - t0)
    right = np.searchsorted(key, key, side="right")  # one past the last request at this moment
    left = {name: np.searchsorted(key, key - w, side="right") for name, w in WINDOWS.items()}

    out: dict[str, np.ndarray] = {}
    for name in WINDOWS:
        out[f"req_count_{name}"] = right - left[name]
    errors = np.concatenate([[0], np.cumsum(np.asarray(status)[order] >= 400)])
    count_5m = right - left["5m"]
    out["error_rate_5m"] = (errors[right] - errors[left["5m"]]) / count_5m
    out["distinct_paths_5m"] = _distinct_in_window(c, t, key, right, np.asarray(path, dtype=object)[order], 300.0)
    if user_agent is not None:
        ua = np.asarray(user_agent, dtype=object)[order]
        out["distinct_ua_10m"] = _distinct_in_window(c, t, key, right, ua, 600.0)
    else:
        out["distinct_ua_10m"] = np.full(n, MISSING, dtype=np.int64)

    # gaps between consecutive requests of the same client; windows hold m = count - 1 of them
    gap = np.diff(t, prepend=t[0])
    gap[np.r_[True, c[1:] != c[:-1]]] = 0.0
    sq = np.concatenate([[0.0], np.cumsum(gap * gap)])
    lo = left["10m"]
    m = right - lo - 1
    safe = np.maximum(m, 1)
    mean = (t[right - 1] - t[lo]) / safe
    var = np.maximum((sq[right] - sq[np.minimum(lo + 1, n)]) / safe - mean * mean, 0.0)
    out["iat_mean"] = np.where(m >= 1, mean, float(MISSING))
    out["iat_std"] = np.where(m >= 1, np.sqrt(var), float(MISSING))

    result = {}
    for name, values in out.items():
        back = np.empty_like(values)
        back[order] = values
        result[name] = back
    return result


def _distinct_in_window(
    c: np.ndarray, t: np.ndarray, key: np.ndarray, right: np.ndarray, values: np.ndarray, w: float
) -> np.ndarray:
    """Distinct ``values`` per client in ``(T - w, T]`` for every request (arrays sorted by client, time)."""
    vcode = pd.factorize(values)[0].astype(np.int64)
    pair = c * (int(vcode.max()) + 1) + vcode
    by_pair = np.lexsort((t, pair))  # stable: equal times keep their order
    same_next = np.r_[pair[by_pair][1:] == pair[by_pair][:-1], False]
    next_t = np.full(len(t), np.inf)
    next_t[by_pair[:-1][same_next[:-1]]] = t[by_pair[1:][same_next[:-1]]]
    end_key = key + (np.minimum(t + w, next_t) - t)
    ends = np.sort(end_key)
    return right - np.searchsorted(ends, key, side="right")


def _missing(n: int) -> np.ndarray:
    return np.full(n, MISSING, dtype=np.int64)


def _ratio(part: np.ndarray, total: np.ndarray) -> np.ndarray:
    return np.divide(part, total, out=np.zeros(len(part), dtype=np.float64), where=total > 0)


def _count(arr: pa.Array, pattern: str) -> np.ndarray:
    if len(arr) == 0:
        return np.zeros(0, dtype=np.int64)
    return np.asarray(pc.count_substring_regex(arr, pattern), dtype=np.int64)


def _flag(arr: pa.Array, pattern: str) -> np.ndarray:
    if len(arr) == 0:
        return np.zeros(0, dtype=np.int64)
    return np.asarray(pc.match_substring_regex(arr, pattern, ignore_case=True), dtype=np.int64)


def _decode(values: Sequence[str], plus: bool) -> list[str]:
    """Percent-decode (latin-1, byte for byte), and once more where an escape is still left, so double
    encoding does not hide a payload. Each distinct value is decoded once."""
    codes, uniques = pd.factorize(np.asarray(values, dtype=object))
    decoded = np.empty(len(uniques), dtype=object)
    for i, v in enumerate(uniques):
        if "%" in v or (plus and "+" in v):
            d = unquote_plus(v, "latin-1") if plus else unquote(v, "latin-1")
            decoded[i] = unquote(d, "latin-1") if "%" in d else d
        else:
            decoded[i] = v
    return decoded[codes].tolist() if len(codes) else []


def _text_stats(
    values: Sequence[str], *, entropy: bool = False, classes: dict[str, np.ndarray] | None = None
) -> dict[str, np.ndarray]:
    """Length, optional Shannon entropy (bits per character) and counts of character classes, for
    every value; computed once per distinct value over one byte buffer with numpy."""
    codes, uniques = pd.factorize(np.asarray(values, dtype=object))
    u = len(uniques)
    lengths = np.fromiter(map(len, uniques), dtype=np.int64, count=u)
    buf = np.frombuffer("".join(uniques).encode("latin-1", "replace"), dtype=np.uint8)
    row = np.repeat(np.arange(u), lengths)
    stats: dict[str, np.ndarray] = {"length": lengths}
    for name, table in (classes or {}).items():
        stats[name] = np.bincount(row, weights=table[buf], minlength=u).astype(np.int64)
    if entropy:
        stats["entropy"] = _entropy(buf, lengths)
    return {name: values_[codes] if len(codes) else values_[:0] for name, values_ in stats.items()}


def _entropy(buf: np.ndarray, lengths: np.ndarray, chunk: int = 4096) -> np.ndarray:
    """Shannon entropy of each consecutive slice of ``buf``: byte histograms of ``chunk`` rows at a time."""
    u = len(lengths)
    offsets = np.concatenate([[0], np.cumsum(lengths)])
    out = np.zeros(u, dtype=np.float64)
    for r0 in range(0, u, chunk):
        r1 = min(r0 + chunk, u)
        a, b = offsets[r0], offsets[r1]
        if a == b:
            continue
        local_row = np.repeat(np.arange(r1 - r0), lengths[r0:r1])
        hist = np.bincount(local_row * 256 + buf[a:b], minlength=(r1 - r0) * 256).reshape(r1 - r0, 256)
        total = np.maximum(lengths[r0:r1], 1)[:, None]
        p = hist / total
        with np.errstate(divide="ignore", invalid="ignore"):
            out[r0:r1] = -np.where(hist > 0, p * np.log2(np.where(hist > 0, p, 1.0)), 0.0).sum(axis=1)
    return out + 0.0  # no negative zeros


def _private_ip(client: Sequence[str]) -> np.ndarray:
    """1 private (RFC 1918, carrier-grade NAT, unique local), loopback or link-local, 0 any other
    address, -1 not an IP address (a host name); worked out once per distinct address."""
    codes, uniques = pd.factorize(np.asarray(client, dtype=object))
    flags = np.empty(len(uniques), dtype=np.int64)
    for i, value in enumerate(uniques):
        try:
            ip = ipaddress.ip_address(value.strip("[]"))
        except ValueError:
            flags[i] = MISSING
            continue
        mapped = getattr(ip, "ipv4_mapped", None)
        ip = mapped or ip
        flags[i] = int(ip.is_loopback or ip.is_link_local or any(ip in net for net in _PRIVATE_NETS))
    return flags[codes] if len(codes) else np.zeros(0, dtype=np.int64)


# ----------------------------------------------------------------------------- entry points
def parse_text(text: str, fmt: str = "auto", source: str = "<text>") -> Requests:
    """Parse latin-1 text in the given format (``auto`` detects it)."""
    if fmt not in FORMATS:
        raise InputError(f"{source}: unknown format {fmt!r}; expected one of {', '.join(FORMATS)}")
    if not text.strip():
        raise InputError(f"{source}: no HTTP request found (the file is {'blank' if text else 'empty'})")
    chosen = detect_format(text, source) if fmt == "auto" else fmt
    req = parse_raw(text, source) if chosen == "raw" else parse_access_log(text, chosen, source)
    if len(req) == 0:
        what = "raw HTTP request" if chosen == "raw" else f"{chosen} log line"
        raise InputError(f"{source}: no {what} found ({req.n_malformed} malformed entries skipped)")
    problems = []
    if req.n_malformed:
        problems.append(f"skipped {req.n_malformed} malformed request(s)")
    if req.n_incomplete:
        problems.append(f"kept {req.n_incomplete} request(s) whose body is shorter than its Content-Length")
    if problems:
        warnings.warn(f"{source}: {'; '.join(problems)} ({len(req)} read)", FeaturizeWarning, stacklevel=3)
    return req


def featurize_text(text: str | bytes, fmt: str = "auto", source: str = "<text>") -> pd.DataFrame:
    """Features of every request in ``text`` (bytes, or a str that is taken as UTF-8)."""
    return extract_features(parse_text(as_text(text), fmt, source))


def featurize_file(
    path: str | Path,
    fmt: str = "auto",
    max_decompressed_mb: int = DEFAULT_MAX_DECOMPRESSED_MB,
    ids: Sequence[str] = (),
) -> pd.DataFrame:
    """Features of every request in one file; windows are per file (one capture, one clock). With
    ``ids`` (names from :data:`ID_COLUMNS`), those columns come first, so a scored row leads back to
    its request."""
    return featurize_files([path], fmt, max_decompressed_mb, ids, "file")[0]


def featurize_files(
    paths: Sequence[str | Path],
    fmt: str = "auto",
    max_decompressed_mb: int = DEFAULT_MAX_DECOMPRESSED_MB,
    ids: Sequence[str] = (),
    window_scope: str = "file",
) -> list[pd.DataFrame]:
    """Features of every request of each file, one frame per file; with ``window_scope="stream"``
    a client's windows run across the files (:func:`stream_windows`)."""
    if window_scope not in WINDOW_SCOPES:
        raise InputError(f"--window-scope: unknown {window_scope!r}; expected one of {', '.join(WINDOW_SCOPES)}")
    requests = [parse_text(read_text(path, max_decompressed_mb), fmt, str(path)) for path in paths]
    per_file = window_scope == "file"
    frames = [extract_features(req, windows=per_file) for req in requests]
    if not per_file:
        stream_windows(requests, frames)
    if ids:
        frames = [pd.concat([request_ids(req, ids), f], axis=1) for req, f in zip(requests, frames, strict=True)]
    return frames


# What featurize.py --id-columns may add: the file, the request's position in it (1-based), and
# its request line. Never features: train.py and score.py take them as --id-columns.
ID_COLUMNS = ("source", "record", "request")


def request_ids(req: Requests, names: Sequence[str]) -> pd.DataFrame:
    """The id columns ``names`` of every request of ``req``, in order."""
    n = len(req)
    makers = {
        "source": lambda: np.full(n, req.source, dtype=object),
        "record": lambda: np.arange(1, n + 1, dtype=np.int64),
        "request": lambda: (pd.Series(req.method, dtype=object) + " " + pd.Series(req.target, dtype=object)).to_numpy(),
    }
    unknown = [name for name in names if name not in makers]
    if unknown:
        raise InputError(f"--id-columns: unknown {unknown}; expected some of {', '.join(ID_COLUMNS)}")
    return pd.DataFrame({name: makers[name]() for name in names})
