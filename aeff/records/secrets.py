"""Credentials out of every record and console line: `redact` (a text), `redact_record`
(a record's keys and values), the console's streams and log records made redacted.

Caught, each value replaced by `***` where it stands:
- the user-info part of a URL (`https://user:token@host`, a raw `@` or `/` in the
  password included, also after a path has folded `//` into `/`), and the password of an
  address without a scheme (`user:pw@host:5432`);
- the value of a query or fragment parameter whose name says it is secret (`?token=`,
  `#access_token=`, `sig=`, `code=`, `api_key=` ..., quoted or not);
- `Authorization: <scheme> <value>` and `Bearer <value>`;
- the value given to a name that says it is secret (`password=`, `api_key: `, `api-key=`,
  `X-Api-Key: `, `+meta.db_password=`, `token=` ...): detect-secrets' keyword list and
  aeff's own words, `-` read as `_`; and the value after such a command-line option
  (`--password v`), and the password of `curl -u user:pw`;
- tokens known by their shape (AWS, GitHub, GitLab, Slack, Stripe, OpenAI, PyPI, npm,
  JWT, private keys ...): detect-secrets' regex-based plugins;
- the value of an environment variable whose name says it is secret (`GITHUB_TOKEN`,
  `AWS_SECRET_ACCESS_KEY`) wherever it shows (`--cfg job --resolve` prints the config
  with `${oc.env:...}` resolved).
Hashes, paths, hyperparameters and metric names are left alone: detect-secrets'
high-entropy plugins would take a sha256 or a commit hash for a secret, and are not used.
"""

import logging
import os
import re
import sys
from collections.abc import Callable, Mapping
from typing import Any, TextIO

from detect_secrets.core.plugins.util import get_mapping_from_secret_type_to_class
from detect_secrets.plugins.base import RegexBasedDetector
from detect_secrets.plugins.keyword import DENYLIST

MASK = "***"
# After `:/`, to the last `@` before a `/`; or `user:` and a password holding `/`, to the
# first `@` (not a port: `host:8080/@scope` keeps its path).
USER_INFO = re.compile(r"(?<=:/)(/?)(?:[^/\s'\"]*@|[^/\s:@'\"]+:(?!\d+/)[^\s'\"@]*?/[^\s'\"]*?@)")
# `user:pw@host:5432` with no scheme: the port tells it from `a:b@c` in prose.
# The password alone is masked: a YAML value `***@host` would be an alias.
BARE_USER_INFO = re.compile(r"(?<![\w/:@.%+-])([\w.%+-]+:)[^\s@/'\"]+@(?=[\w.-]+:\d+\b)")
# `--password v`, `-p`-less: a long option whose name says it is secret, then its value.
SECRET_OPTION = re.compile(
    r"(?<![\w-])(--[\w.-]+)(\s+)"
    r"(?=(\"[^\"\n]*\"|'[^'\n]*'|[^\s\"'-][^\s\"']*))"
)
NOT_A_VALUE = re.compile(r"[-_](?:file|path|dir|stdin|env)$")
# curl's `-u user:pw` / `--user user:pw` (and `--proxy-user`): the password.
CURL_USER = re.compile(r"(?<![\w-])(-u|-U|--user|--proxy-user)(\s+['\"]?[^\s:'\"]+:)[^\s'\";]+")
SECRET_PARAMETER = re.compile(
    r"(?i)([?&;#][\w.-]*(?:token|key|secret|sig|signature|password|passwd|pwd|auth|credential)"
    r"[\w.-]*=|[?&;#]code=)([\"']?)[^&#\s'\",;]+(?:\2)?"
)
# The header's value, its scheme too (`Bearer <token>`, `Basic <base64>`), and a bearer
# token alone.
AUTHORIZATION = re.compile(
    r"(?i)(\bauthorization[\"']?\s*[:=]\s*[\"']?)(?:[a-z-]+\s+)?[^\s\"',;)\]}]+"
)
BEARER = re.compile(r"(?i)(\bbearer\s+)[\w.~+/=-]+")
# A name that says its value is secret: a word of detect-secrets' keyword list anywhere
# (`db_password`, `api_key`), or `token` at the name's end (`access_token`, not
# `max_tokens` nor `token_dropout`). Not bare `key` nor `auth`: `group_key`, `author`.
# Searched in the lowercased name: twenty times faster than with re.IGNORECASE.
SECRET_WORD = re.compile("|".join(DENYLIST))
SECRET_END = re.compile(r"(?:token|credentials?|authorization)$")
# Each `name=`/`name: ` and the value after it, which the match leaves for the next one
# (`note=token=abc`); the name is tested apart, which keeps the scan linear. Not `==`:
# `detect-secrets==1.5.0` in packages.txt is a version.
ASSIGNMENT = re.compile(
    r"(?<![\w.-])([\w.-]+)[\"']?\s*(?:=(?!=)|:(?!//))\s*(?=(\"[^\"\n]*\"|'[^'\n]*'|[^\s\"',&;)\]}]+))"
)
# Plugins left out: IP addresses are no secret (and package versions look like them);
# basic auth's short passwords USER_INFO masks where they stand; the IBM, Cloudant and
# Softlayer patterns find a value after a name (`cloudant_password=`), as the name rule
# does, and took 0.35 ms of a 0.75 ms row; Artifactory's `AP...` takes plain words.
NOT_USED = (
    "IPPublicDetector",
    "BasicAuthDetector",
    "CloudantDetector",
    "IbmCloudIamDetector",
    "IbmCosHmacDetector",
    "SoftlayerDetector",
    "ArtifactoryDetector",
)
SHAPES = [
    pattern
    for plugin in get_mapping_from_secret_type_to_class().values()
    if issubclass(plugin, RegexBasedDetector) and plugin.__name__ not in NOT_USED
    for pattern in plugin.denylist
]
DELIMITERS = " \t\n=:\"'"  # some shapes take the characters around a token into their match
MIN_TOKEN = 16  # a shorter group is a prefix (`ghp`, `glpat`), not the token
TOKEN_CHAR = re.compile(r"[\w.+/=-]")
MIN_ENVIRONMENT_SECRET = 8


def redact(text: str) -> str:
    """`https://user:token@host/x?sig=abc` -> `https://***@host/x?sig=***`; idempotent."""
    for value in ENVIRONMENT_SECRETS:
        text = text.replace(value, MASK)
    text = USER_INFO.sub(rf"\1{MASK}@", text)
    if "@" in text:
        text = BARE_USER_INFO.sub(rf"\1{MASK}@", text)
    if "-" in text:
        text = CURL_USER.sub(rf"\1\2{MASK}", text)
        text = _masked_options(text)
    text = SECRET_PARAMETER.sub(rf"\1\2{MASK}\2", text)
    lower = text.lower()  # a word looked for first: a case-blind pattern is slow
    if "authorization" in lower:
        text = AUTHORIZATION.sub(rf"\1{MASK}", text)
    if "bearer" in lower:
        text = BEARER.sub(rf"\1{MASK}", text)
    text = _masked_assignments(text)
    return _masked_shapes(text)


def secret_name(name: str) -> bool:
    name = name.lower().replace("-", "_")  # `api-key`, `X-Api-Key`
    return bool(SECRET_WORD.search(name) or SECRET_END.search(name))


def environment_secrets(environ: Mapping[str, str]) -> list[str]:
    """The values of the variables whose names say they are secret, longest first; not
    PWD (`pwd` is a keyword: it is the working directory), nor values too short to be
    told from other text."""
    return sorted(
        {
            value
            for name, value in environ.items()
            if len(value) >= MIN_ENVIRONMENT_SECRET
            and name not in ("PWD", "OLDPWD")
            and secret_name(name)
        },
        key=len,
        reverse=True,
    )


def _masked_assignments(text: str) -> str:
    """The value given to a secret name masked; the name kept, and a value that was
    unquoted after `:` quoted, so that a YAML `password: ***` is no alias."""
    pieces, done = [], 0
    for match in ASSIGNMENT.finditer(text):
        value = match.group(2)
        if match.start() < done or value.strip("'\"") == MASK:
            continue  # inside a value just masked, or masked before
        if not secret_name(match.group(1)):
            continue
        colon = match.group(0).rstrip()[-1] == ":"
        quote = value[0] if value[0] in "'\"" else "'" if colon and unquoted(text, match) else ""
        pieces += [text[done : match.end()], quote, MASK, quote]
        done = match.end() + len(value)
    return "".join([*pieces, text[done:]])


def unquoted(text: str, match: re.Match) -> bool:
    """Whether `match` stands outside quotes on its line: there a YAML value `***` would be
    an alias, and is quoted; inside `'X-Api-Key: v'` a quote would end the string."""
    line = text[text.rfind("\n", 0, match.start()) + 1 : match.start()]
    return line.count("'") % 2 == 0 and line.count('"') % 2 == 0


def _masked_options(text: str) -> str:
    """The value after a long option that names a secret (`--password v`, `--api-key v`)."""
    pieces, done = [], 0
    for match in SECRET_OPTION.finditer(text):
        value = match.group(3)
        option = match.group(1)
        if match.start() < done or value.strip("'\"") == MASK or not secret_name(option):
            continue
        if NOT_A_VALUE.search(option):  # `--password-file PATH`, `--password-stdin`
            continue
        quote = value[0] if value[0] in "'\"" else ""
        pieces += [text[done : match.end()], quote, MASK, quote]
        done = match.end() + len(value)
    return "".join([*pieces, text[done:]])


def _masked_shapes(text: str) -> str:
    for pattern in SHAPES:
        pieces, done = [], 0
        for match in pattern.finditer(text):
            first, last = _token_span(match)
            if first < done:  # within the last token masked: one mask for both
                done = max(done, last)
                continue
            pieces += [text[done:first], MASK]
            done = last
        text = "".join([*pieces, text[done:]])
    return text


def _token_span(match: re.Match) -> tuple[int, int]:
    """Where the token is: a plugin's group where it is the token (other groups are a
    prefix, `ghp`), else the match less the delimiters around it, to the token's end (JWT's
    pattern stops before the signature)."""
    spans = [match.span(i) for i in range(1, match.re.groups + 1) if match.group(i)]
    first, last = max(spans, key=lambda span: span[1] - span[0], default=(0, 0))
    if last - first >= MIN_TOKEN:
        return first, last
    whole, (start, end) = match.group(0), match.span(0)
    first = start + len(whole) - len(whole.lstrip(DELIMITERS))
    last = end - (len(whole) - len(whole.rstrip(DELIMITERS)))
    if last == end:  # the match did not end at a delimiter: the token may go on
        while last < len(match.string) and TOKEN_CHAR.match(match.string, last):
            last += 1
    return first, last


def redact_record(record: Mapping[str, Any]) -> dict[str, Any]:
    """A record's values redacted; a value whose key names a secret (`meta.password`,
    `meta.api_key`) is masked whatever it holds, a number included."""
    return {
        key: MASK if secret_name(key.rsplit(".", 1)[-1]) else _redacted(value)
        for key, value in record.items()
    }


def _redacted(value: Any) -> Any:
    if isinstance(value, str):
        return redact(value)
    if isinstance(value, list | tuple):
        return [_redacted(item) for item in value]
    return value


# The environment this process started with (read once: 50 us a call to read it again).
ENVIRONMENT_SECRETS = environment_secrets(os.environ)


def redact_log_records() -> None:
    """Every log record this process makes from now on, credentials redacted as it is made:
    whatever handlers a logging config sets up (Hydra's default, `hydra/job_logging=disabled`,
    a user's own), none can print or write it unredacted."""
    make_record = logging.getLogRecordFactory()
    if getattr(make_record, "redacts", False):
        return

    def redacting_factory(*args, **kwargs) -> logging.LogRecord:
        record = make_record(*args, **kwargs)
        record.msg, record.args = redact(record.getMessage()), None
        if record.exc_info:  # formatters print this text, made once, instead of their own
            record.exc_text = redact(logging.Formatter().formatException(record.exc_info))
            record.exc_info = None  # nor can a handler that renders it itself
        return record

    redacting_factory.redacts = True
    logging.setLogRecordFactory(redacting_factory)


class RedactingStream:
    """A console stream whose writes are redacted: what Hydra prints itself (its refusals
    of an override, `--cfg job`, `--help`) goes to `sys.stdout`/`sys.stderr` unlogged."""

    def __init__(self, stream: TextIO) -> None:
        self.stream = stream

    def write(self, text: str) -> int:
        self.stream.write(redact(text))
        return len(text)

    def __getattr__(self, name: str) -> Any:  # flush, isatty, fileno, encoding ...
        return getattr(self.stream, name)

    # Equal to the stream it wraps: a handler that closes its stream unless it is
    # `sys.stderr` (absl's, which JAX installs, asks `stream in (sys.stderr, ...)`) would
    # otherwise close the real console when Hydra reconfigures logging.
    def __eq__(self, other: object) -> bool:
        return other is self or other is self.stream

    def __hash__(self) -> int:
        return hash(self.stream)


def redacting_console(call: Callable[[], Any]) -> Any:
    """`call()` with `sys.stdout` and `sys.stderr` redacted, then the streams as they were."""
    streams = sys.stdout, sys.stderr
    sys.stdout, sys.stderr = RedactingStream(sys.stdout), RedactingStream(sys.stderr)
    try:
        return call()
    finally:
        sys.stdout, sys.stderr = streams
