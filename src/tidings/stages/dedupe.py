"""Duplicate detection: canonical URLs (exact link duplicates), content hashes (exact text
duplicates) and MinHash fingerprints (the same article re-published with different page chrome).

Everything here is pure; the pipeline decides what to store and what to merge.
"""

from __future__ import annotations

import hashlib
import math
import re
import struct
import unicodedata
from collections.abc import Iterable, Iterator, Mapping
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qsl, quote, unquote, urlsplit, urlunsplit

if TYPE_CHECKING:  # datasketch pulls in scipy (~2 s): imported only when fingerprints are made
    import numpy as np
    from datasketch import LeanMinHash, MinHash, MinHashLSH

from ..textutil import joined_shingle_units, normalize_text, shingle_units
from ..textutil import nfkc as to_nfkc

__all__ = [
    "GLOBAL_TRACKING_PARAMS",
    "HOST_VOLATILE_PARAMS",
    "MIN_FINGERPRINT_CHARS",
    "NUM_PERM",
    "SHINGLE_SIZE",
    "NearDuplicateIndex",
    "canonicalize_url",
    "content_hash",
    "estimated_similarity",
    "find_near_duplicates",
    "find_near_duplicates_in_fingerprints",
    "fingerprint",
    "fingerprint_bytes",
    "is_current",
    "minhash_from_bytes",
    "minhash_to_bytes",
    "poly_hash32",
    "shingles",
]

# --------------------------------------------------------------------------------------------
# Canonical URLs
# --------------------------------------------------------------------------------------------

# Query parameters that only say how a reader arrived (campaigns, click ids, share widgets).
# Dropped on every host. Names are compared lower-cased. Deliberately absent: `ref` (GitHub uses
# ?ref=<branch>), `source`, `id`, `s`, `t`, `v`, `p` (real content selectors on many sites).
GLOBAL_TRACKING_PARAMS: frozenset[str] = frozenset(
    {
        # ad / analytics click ids
        "fbclid", "gclid", "gclsrc", "dclid", "gbraid", "wbraid", "msclkid", "yclid", "twclid",
        "ttclid", "li_fat_id", "igshid", "igsh", "mc_cid", "mc_eid", "_ga", "_gl", "_hsenc", "_hsmi",
        "__hssc", "__hstc", "__hsfp", "hsctatracking", "mkt_tok", "oly_anon_id", "oly_enc_id",
        "vero_id", "vero_conv", "rb_clickid", "s_cid", "wt.mc_id", "cmpid", "ncid", "sr_share",
        # Chinese platforms' share / referral markers (taobao spm/scm, wechat/weibo share, bilibili)
        "spm", "scm", "spm_id_from", "from", "from_source", "isappinstalled", "share_token",
        "share_source", "share_medium", "share_plat", "share_tag", "share_session_id", "share_from",
        "share_app_id", "sharesource", "shareid", "share_id", "vd_source", "unique_k", "timestamp_share",
        "wfr", "tt_from", "utm_psn",
        # Medium appends ?gi=<12 hex> on its custom domains (betterprogramming.pub, blog.bitsrc.io …),
        # which can't be recognised by host, hence global.
        "gi",
    }
)
_TRACKING_PREFIXES: tuple[str, ...] = ("utm_", "pk_", "mtm_", "hmsr", "hmpl", "hmcu", "hmkw", "hmci")

# Host-specific volatile parameters: session, device and share state that differs per reader.
HOST_VOLATILE_PARAMS: Mapping[str, frozenset[str]] = {
    "mp.weixin.qq.com": frozenset(
        {
            "chksm", "scene", "sessionid", "clicktime", "enterid", "key", "ascene", "uin", "devicetype",
            "version", "lang", "pass_ticket", "exportkey", "subscene", "srcid", "mpshare", "nettype",
            "abtest_cookie", "wx_header", "realreporttime", "sharer_sharetime", "sharer_shareid",
            "sharer_shareinfo", "sharer_shareinfo_first", "from_msgid", "from_itemidx", "poc_token",
            "click_id", "fasttmpl_type", "fasttmpl_fullversion", "fasttmpl_flag", "session_us",
            "countrycode", "platform", "rd2werd", "wxfrom", "winzoom", "ptype",
            "forceh5", "xtrack", "a_url", "color_scheme", "support_redirect", "cur_album_id",
            "nolastread", "search_click_id", "version_id", "exptype", "show_redirect",
        }
    ),
    "twitter.com": frozenset({"s", "t", "ref_src", "ref_url", "cn", "src"}),
    "x.com": frozenset({"s", "t", "ref_src", "ref_url", "cn", "src"}),
    "www.youtube.com": frozenset({"feature", "si", "pp", "ab_channel"}),
    "youtube.com": frozenset({"feature", "si", "pp", "ab_channel"}),
    "youtu.be": frozenset({"feature", "si"}),
    "juejin.cn": frozenset({"searchid", "source"}),
    "www.zhihu.com": frozenset({"share_code", "utm_id", "utm_oi"}),
    "zhuanlan.zhihu.com": frozenset({"share_code", "utm_id", "utm_oi"}),
    "blog.csdn.net": frozenset({"ops_request_misc", "request_id", "biz_id", "depth_1-utm_source"}),
    "www.bilibili.com": frozenset({"buvid", "is_story_h5", "mid", "plat_id", "up_id", "share_times"}),
}
_HOST_VOLATILE_PREFIXES: Mapping[str, tuple[str, ...]] = {
    "mp.weixin.qq.com": ("sharer_",),
    "blog.csdn.net": ("depth_1-", "utm_"),
}
# WeChat's old-style article address identifies the article by exactly these four parameters.
_WECHAT_ARTICLE_PARAMS = ("__biz", "mid", "idx", "sn")

_DEFAULT_PORTS = {"http": 80, "https": 443}
# RFC 3986 unreserved characters: their percent-escapes are decoded, everything else is kept
# (or re-escaped with upper-case hex) so that equivalent spellings compare equal.
_UNRESERVED = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~")
_PCT_RE = re.compile(r"%([0-9A-Fa-f]{2})")
_PATH_SAFE = "/%:@!$&'()*+,;=-._~"
_QUERY_SAFE = "/:@!$'()*,;?~-._"
_QUERY_VALUE_SAFE = _QUERY_SAFE + "="  # base64 ids such as WeChat's __biz=…== stay readable
_HTTP_RE = re.compile(r"^https?://", re.IGNORECASE)


def _normalize_escapes(s: str) -> str:
    def fix(m: re.Match[str]) -> str:
        ch = chr(int(m.group(1), 16))
        return ch if ch in _UNRESERVED else "%" + m.group(1).upper()

    return _PCT_RE.sub(fix, s)


def _remove_dot_segments(path: str) -> str:
    if "/." not in path and not path.startswith("."):
        return path
    out: list[str] = []
    segments = path.split("/")
    for i, seg in enumerate(segments):
        if seg == ".":
            if i == len(segments) - 1:
                out.append("")
            continue
        if seg == "..":
            if len(out) > 1:
                out.pop()
            if i == len(segments) - 1:
                out.append("")
            continue
        out.append(seg)
    return "/".join(out)


def _canonical_host(host: str) -> str:
    host = host.rstrip(".").lower()
    if host.isascii():
        return host
    try:
        # Per-label IDNA: a host typed as 例子.中国 and one written xn--fsqu00a.xn--fiqs8s are the same.
        return ".".join(
            label.encode("idna").decode("ascii") if not label.isascii() else label
            for label in unicodedata.normalize("NFKC", host).split(".")
        )
    except UnicodeError:
        return host


def _is_volatile(host: str, name: str) -> bool:
    key = name.lower()
    if key in GLOBAL_TRACKING_PARAMS or key.startswith(_TRACKING_PREFIXES):
        return True
    if key in HOST_VOLATILE_PARAMS.get(host, ()):
        return True
    return key.startswith(_HOST_VOLATILE_PREFIXES.get(host, ()))


def _canonical_query(host: str, path: str, query: str) -> str:
    pairs = parse_qsl(query, keep_blank_values=True)
    if host == "mp.weixin.qq.com":
        if path.startswith("/s/"):
            # /s/<id> is the whole identity; every query parameter on it is per-reader state.
            return ""
        if path == "/s":
            pairs = [(k, v) for k, v in pairs if k in _WECHAT_ARTICLE_PARAMS]
    pairs = sorted((k, v) for k, v in pairs if not _is_volatile(host, k))
    parts = []
    for k, v in pairs:
        qk = quote(k, safe=_QUERY_SAFE)
        parts.append(f"{qk}={quote(v, safe=_QUERY_VALUE_SAFE)}" if v else qk)
    return "&".join(parts)


def canonicalize_url(url: str) -> str:
    """The identity form of a link, for finding the same article linked twice.

    - scheme and host lower-cased, IDN hosts in punycode, a trailing dot on the host dropped,
      default ports (:80 for http, :443 for https) dropped;
    - the root path is ``/`` (``https://a.com`` == ``https://a.com/``); any other trailing ``/``
      is dropped (``/learn/`` == ``/learn``); ``.``/``..`` segments resolved; percent-escapes of
      unreserved characters decoded, others upper-cased; non-ASCII path characters escaped;
    - the fragment is dropped, except SPA routes (``#/…``, ``#!…``) which select the page;
    - tracking parameters (``utm_*``, :data:`GLOBAL_TRACKING_PARAMS`) and per-host volatile ones
      (:data:`HOST_VOLATILE_PARAMS`, e.g. WeChat's ``chksm``/``scene``/``sharer_*``) are dropped,
      the rest sorted; WeChat ``/s?…`` keeps only ``__biz``, ``mid``, ``idx``, ``sn``;
      WeChat ``/s/<id>`` keeps no query at all.

    Kept on purpose: ``www.`` (``www.example.com`` and ``example.com`` are different hosts that may
    serve different things — the content hash and MinHash catch the cases where they don't), the
    ``http``/``https`` distinction (same reason), and path case (paths are case-sensitive; WeChat
    ids are mixed-case).

    Identifiers that are not http(s) URLs (``post:…``, ``note:…``, ``file:…``) and anything that
    can't be parsed come back stripped but otherwise unchanged; this never raises.
    """
    if not isinstance(url, str):
        return url
    raw = url.strip()
    if not _HTTP_RE.match(raw):
        return raw
    try:
        parts = urlsplit(raw)
        scheme = parts.scheme.lower()
        host = parts.hostname or ""
        if not host:
            return raw
        host = _canonical_host(host)
        port = parts.port  # raises ValueError on a non-numeric or out-of-range port
        netloc = host if ":" not in host else f"[{host}]"  # IPv6 literals keep their brackets
        if parts.username is not None or parts.password is not None:
            userinfo = parts.netloc.rpartition("@")[0]
            netloc = f"{userinfo}@{netloc}"
        if port is not None and port != _DEFAULT_PORTS.get(scheme):
            netloc = f"{netloc}:{port}"

        path = _normalize_escapes(parts.path)
        path = quote(path, safe=_PATH_SAFE)  # escapes non-ASCII and spaces, leaves escapes alone
        path = _remove_dot_segments(path)
        path = path.rstrip("/") or "/"

        query = _canonical_query(host, unquote(path), parts.query)

        fragment = parts.fragment
        fragment = fragment if fragment.startswith(("/", "!")) else ""
        return urlunsplit((scheme, netloc, path, query, fragment))
    except (ValueError, UnicodeError):
        return raw


# --------------------------------------------------------------------------------------------
# Exact content
# --------------------------------------------------------------------------------------------


def content_hash(text: str) -> str:
    """``sha256:<hex>`` of the NFKC, whitespace-collapsed text: the same text re-wrapped or with
    full-width letters still hashes the same."""
    return "sha256:" + hashlib.sha256(normalize_text(text).encode("utf-8")).hexdigest()


# --------------------------------------------------------------------------------------------
# Near duplicates
# --------------------------------------------------------------------------------------------

MIN_FINGERPRINT_CHARS = 200
"""Texts shorter than this (after whitespace normalisation) get no fingerprint: a few sentences
share too many shingles with unrelated short texts, and short items are better compared by hash."""

NUM_PERM = 128
SHINGLE_SIZE = 4
"""Units per shingle. One size for every language so that all stored fingerprints stay comparable:
4 CJK characters (about two words) or 4 English words."""

_SEED = 1
_MAGIC = b"TMH"
_FORMAT_VERSION = 1
_SCHEMES = ("affine32", "affine64", "legacy", "poly32")
"""Stored scheme bytes are indexes into this. The first three are datasketch's own schemes over
SHA-1 shingle hashes (``affine32`` is what tidings stored before ``poly32``). ``poly32`` keeps
datasketch's affine32 permutations and pre-mix but hashes shingles with a polynomial hash computed
for all shingles at once in numpy (see :func:`_poly_shingle_hashes`): SHA-1 of each shingle, one
Python call per shingle, was most of a fingerprint's cost."""
_SCHEME = "poly32"
"""The scheme new fingerprints are made with. Fingerprints of another scheme are never compared with
them (:class:`NearDuplicateIndex` and ``jaccard`` refuse it); the dedupe stage recomputes them from
the stored text first (:func:`is_current`)."""
_DATASKETCH_SCHEME = {"affine32": "affine32", "affine64": "affine64", "legacy": "legacy", "poly32": "affine32"}
_SHINGLE_HASH = {"affine32": "sha1", "affine64": "sha1", "legacy": "sha1", "poly32": "poly"}
_HEADER = struct.Struct("<3sBBIH")  # magic, version, scheme index, seed, num_perm


def shingles(text: str, size: int = SHINGLE_SIZE) -> set[str]:
    """Overlapping runs of ``size`` units (CJK characters / lower-cased Latin words), with
    whitespace and punctuation removed so page re-wrapping and punctuation width don't matter."""
    units = shingle_units(text)
    if not units:
        return set()
    if len(units) <= size:
        return {" ".join(units)}
    return {" ".join(units[i : i + size]) for i in range(len(units) - size + 1)}


def fingerprint(text: str | None) -> LeanMinHash | None:
    """A MinHash of the text's shingles, or None when the text is under
    :data:`MIN_FINGERPRINT_CHARS` characters or has no words at all."""
    values = _fingerprint_values(text)
    if values is None:
        return None
    return _fingerprint_class()(_SCHEME, _SEED, values)


def fingerprint_bytes(text: str | None, *, nfkc: bool = False) -> bytes | None:
    """``minhash_to_bytes(fingerprint(text))`` without the MinHash objects: what the pipeline stores.
    ``nfkc``: the caller passes the text's NFKC form already (spares normalising a whole page again)."""
    values = _fingerprint_values(text, nfkc=nfkc)
    if values is None:
        return None
    return _HEADER.pack(_MAGIC, _FORMAT_VERSION, _SCHEMES.index(_SCHEME), _SEED, NUM_PERM) + values.astype("<u4").tobytes()


# --- the MinHash itself, computed here for speed -------------------------------------------------
#
# A poly32 fingerprint is exactly what datasketch's MinHash(num_perm=128, seed=1, scheme="affine32",
# hashfunc=poly_hash32).update_batch(shingles) gives: the same MurmurHash3 pre-mix, the same
# permutations a·h + b mod 2³² and the minimum per permutation; only the shingle hash is ours
# (tests/test_dedupe.py checks the equality with a scalar reference hash on the shared corpus).
# The cost is what changes: every shingle's hash comes from prefix sums over the encoded text, in a
# few numpy passes, and the permutations are drawn once per process, not once per page.

_BLOCK = 512
"""Shingles per numpy block: one block of every permutation of them is 128 × 512 × 4 bytes, cache-sized."""
_permutations: tuple[np.ndarray, np.ndarray] | None = None


def _perms() -> tuple[np.ndarray, np.ndarray]:
    """datasketch's permutations a and b, each repeated along a row per permutation (128 × :data:`_BLOCK`):
    with both operands contiguous, numpy multiplies and adds in its vector loops; a column of factors
    broadcast along the rows made it copy each factor out first, and cost three times as much."""
    global _permutations
    if _permutations is None:
        import numpy as np
        from datasketch import MinHash  # the very draw datasketch makes, so the values cannot drift

        a, b = MinHash(num_perm=NUM_PERM, seed=_SEED, scheme=_DATASKETCH_SCHEME[_SCHEME]).permutations
        _permutations = tuple(  # type: ignore[assignment]
            np.repeat(np.asarray(v, dtype=np.uint32).reshape(-1, 1), _BLOCK, axis=1) for v in (a, b)
        )
    assert _permutations is not None
    return _permutations


POLY_BASE = 0x100000001B3
"""The base P of the shingle hash (FNV's 64-bit prime; any odd number has an inverse mod 2⁶⁴)."""
_POLY_INVERSE = pow(POLY_BASE, -1, 1 << 64)
_MASK64 = (1 << 64) - 1
_CACHED_POWERS = 1 << 16
"""Pᵏ and P⁻ᵏ are kept for texts of up to this many bytes (1 MiB for both tables): every page needs
them, and their running products cannot be vectorised."""
_power_tables: tuple[np.ndarray, np.ndarray] | None = None


def poly_hash32(data: bytes) -> int:
    """The shingle hash of poly32 fingerprints, one shingle at a time (the reference that the
    vectorised :func:`_poly_shingle_hashes` equals): Σ (byteₖ + 1)·Pᵏ mod 2⁶⁴, then MurmurHash3's
    64-bit finalizer, low 32 bits."""
    total, power = 0, 1
    for byte in data:
        total = (total + (byte + 1) * power) & _MASK64
        power = (power * POLY_BASE) & _MASK64
    total ^= total >> 33
    total = (total * 0xFF51AFD7ED558CCD) & _MASK64
    total ^= total >> 33
    total = (total * 0xC4CEB9FE1A85EC53) & _MASK64
    total ^= total >> 33
    return total & 0xFFFFFFFF


def _powers(length: int) -> tuple[np.ndarray, np.ndarray]:
    """Pᵏ and P⁻ᵏ mod 2⁶⁴ for k < ``length`` (at least; uint64), from the tables when they are long enough."""
    global _power_tables
    if length > _CACHED_POWERS:
        return _power_series(length)
    if _power_tables is None:
        _power_tables = _power_series(_CACHED_POWERS)
    return _power_tables


def _power_series(length: int) -> tuple[np.ndarray, np.ndarray]:
    import numpy as np

    tables = np.empty((2, max(length, 1)), dtype=np.uint64)
    tables[:, 0] = 1
    tables[0, 1:] = POLY_BASE
    tables[1, 1:] = _POLY_INVERSE
    with np.errstate(over="ignore"):
        np.cumprod(tables, axis=1, out=tables)  # uint64 products wrap: mod 2⁶⁴
    return tables[0], tables[1]


def _shingle_bounds(joined: bytes) -> tuple[np.ndarray, np.ndarray]:
    """Start and end offsets of every shingle of the joined, encoded units (see :func:`shingles`):
    repeats included, and the whole text as one shingle when it has at most SHINGLE_SIZE units."""
    import numpy as np  # only fingerprints need it: URL canonicalization stays light

    # Units hold no space, and no byte of a multi-byte UTF-8 character is a space: the spaces of the
    # encoded string are exactly the unit boundaries.
    spaces = np.flatnonzero(np.frombuffer(joined, dtype=np.uint8) == 32)
    if len(spaces) < SHINGLE_SIZE:
        return np.zeros(1, dtype=np.intp), np.full(1, len(joined), dtype=np.intp)
    starts = np.concatenate(([0], spaces + 1))
    ends = np.concatenate((spaces, [len(joined)]))
    last = SHINGLE_SIZE - 1
    return starts[: len(starts) - last], ends[last:]


def _poly_shingle_hashes(joined: bytes) -> np.ndarray:
    """:func:`poly_hash32` of every shingle of ``joined`` at once (uint32). With prefix sums
    Sᵢ = Σₖ₍ₖ₍ᵢ₎ (byteₖ + 1)·Pᵏ, a shingle [s, e) sums to (Sₑ − Sₛ)·P⁻ˢ: uint64 arithmetic wraps,
    so every step is mod 2⁶⁴, as the reference is. Memory: a few 8-byte words per byte of text."""
    import numpy as np

    starts, ends = _shingle_bounds(joined)
    size = len(joined)
    powers, inverse = _powers(size)
    terms = np.frombuffer(joined, dtype=np.uint8).astype(np.uint64)
    prefix = np.zeros(size + 1, dtype=np.uint64)
    with np.errstate(over="ignore"):
        terms += np.uint64(1)
        terms *= powers[:size]
        np.cumsum(terms, out=prefix[1:])
        del terms
        h = prefix[ends]
        h -= prefix[starts]
        h *= inverse[starts]
        h ^= h >> np.uint64(33)
        h *= np.uint64(0xFF51AFD7ED558CCD)
        h ^= h >> np.uint64(33)
        h *= np.uint64(0xC4CEB9FE1A85EC53)
        h ^= h >> np.uint64(33)
    return h.astype(np.uint32)  # the low 32 bits


def _fingerprint_values(text: str | None, *, nfkc: bool = False) -> np.ndarray | None:
    """The 128 MinHash values (uint32) of ``text``, or None where :func:`fingerprint` gives None."""
    if not text:
        return None
    normalized = text if nfkc else to_nfkc(text)
    # len(normalize_text(text)), as normalize_whitespace has it: re's \s is str.isspace, as split()'s
    # is; collapsing whitespace only shortens, so a text already too short needs no collapsing.
    if len(normalized) < MIN_FINGERPRINT_CHARS or len(" ".join(normalized.split())) < MIN_FINGERPRINT_CHARS:
        return None
    joined = joined_shingle_units(normalized).encode("utf-8")
    if not joined:
        return None
    import numpy as np

    hashed = _fmix32(_poly_shingle_hashes(joined))
    a, b = _perms()
    values = np.full(NUM_PERM, np.iinfo(np.uint32).max, dtype=np.uint32)
    block = np.empty((NUM_PERM, _BLOCK), dtype=np.uint32)  # one row per permutation, one column per shingle
    for shingle_block in _full_blocks(hashed):
        np.multiply(a, shingle_block, out=block)  # uint32 arithmetic wraps: mod 2³²
        block += b
        np.minimum(values, block.min(axis=1), out=values)
    return values


def _full_blocks(hashed: np.ndarray) -> Iterator[np.ndarray]:
    """``hashed`` in runs of exactly :data:`_BLOCK` values that together hold every value: the last run
    overlaps the one before it, and a text with fewer shingles repeats its first. A minimum does not
    change when a value is seen twice, and full-width blocks keep every operand contiguous."""
    import numpy as np

    if len(hashed) < _BLOCK:
        padded = np.full(_BLOCK, hashed[0], dtype=np.uint32)
        padded[: len(hashed)] = hashed
        yield padded
        return
    for start in range(0, len(hashed) - _BLOCK, _BLOCK):
        yield hashed[start : start + _BLOCK]
    yield hashed[len(hashed) - _BLOCK :]


def _fmix32(hv: np.ndarray) -> np.ndarray:
    """MurmurHash3's 32-bit finalizer, as datasketch applies it before the affine32 permutations
    (in place: ``hv`` is the caller's scratch)."""
    import numpy as np

    hv ^= hv >> np.uint32(16)
    hv *= np.uint32(0x85EBCA6B)
    hv ^= hv >> np.uint32(13)
    hv *= np.uint32(0xC2B2AE35)
    hv ^= hv >> np.uint32(16)
    return hv


def minhash_to_bytes(m: MinHash) -> bytes:
    """A compact, self-describing encoding (11-byte header + 4 bytes per permutation for the
    default scheme) for keeping fingerprints in the database."""
    scheme = getattr(m, "tidings_scheme", None) or getattr(m, "scheme", "legacy")
    import numpy as np  # only fingerprints need it: URL canonicalization stays light

    values = np.asarray(m.hashvalues)
    dtype = "<u8" if values.dtype.itemsize == 8 else "<u4"
    header = _HEADER.pack(_MAGIC, _FORMAT_VERSION, _SCHEMES.index(scheme), int(m.seed), len(values))
    return header + values.astype(dtype).tobytes()


def minhash_from_bytes(data: bytes) -> LeanMinHash:
    """Inverse of :func:`minhash_to_bytes`. Raises ValueError on data it did not write."""
    if len(data) < _HEADER.size:
        raise ValueError("fingerprint too short")
    magic, version, scheme_idx, seed, num_perm = _HEADER.unpack_from(data)
    if magic != _MAGIC or version != _FORMAT_VERSION or scheme_idx >= len(_SCHEMES):
        raise ValueError("not a tidings fingerprint")
    body = data[_HEADER.size :]
    if num_perm == 0 or len(body) % num_perm:
        raise ValueError("fingerprint length does not match its header")
    width = len(body) // num_perm
    if width not in (4, 8):
        raise ValueError("fingerprint length does not match its header")
    import numpy as np

    values = np.frombuffer(body, dtype="<u8" if width == 8 else "<u4")
    return _fingerprint_class()(_SCHEMES[scheme_idx], seed, values)


def is_current(blob: bytes | None) -> bool:
    """Whether a stored fingerprint was made with the scheme new ones are made with (when not, the
    dedupe stage recomputes it from the item's text before comparing)."""
    return blob is not None and blob[: len(_CURRENT_PREFIX)] == _CURRENT_PREFIX


_CURRENT_PREFIX = _MAGIC + bytes((_FORMAT_VERSION, _SCHEMES.index(_SCHEME)))
_fingerprint_cls: type | None = None


def _fingerprint_class() -> Any:
    """:class:`datasketch.LeanMinHash` that also knows which tidings scheme made it, and refuses to
    be compared with another (datasketch checks its own schemes and seeds, but poly32 and SHA-1
    affine32 values share both). Made on first use: datasketch is imported only when needed."""
    global _fingerprint_cls
    if _fingerprint_cls is None:
        from datasketch import LeanMinHash

        class Fingerprint(LeanMinHash):
            __slots__ = ("tidings_scheme",)

            def __init__(self, scheme: str, seed: int, values: Any) -> None:
                super().__init__(seed=seed, hashvalues=values, scheme=_DATASKETCH_SCHEME[scheme])
                self.tidings_scheme = scheme

            def jaccard(self, other: Any) -> float:
                theirs = getattr(other, "tidings_scheme", None) or getattr(other, "scheme", None)
                if _SHINGLE_HASH.get(theirs or "", "") != _SHINGLE_HASH[self.tidings_scheme]:
                    raise ValueError(f"fingerprints of different schemes: {self.tidings_scheme} and {theirs}")
                return super().jaccard(other)

        _fingerprint_cls = Fingerprint
    return _fingerprint_cls


def _lsh_params(threshold: float) -> MinHashLSH:
    # datasketch picks bands/rows minimising weighted false-positive + false-negative area; the
    # candidates are verified against the threshold below, so false positives only cost time.
    from datasketch import MinHashLSH

    return MinHashLSH(threshold=min(max(threshold, 0.05), 0.99), num_perm=NUM_PERM, weights=(0.3, 0.7))


class NearDuplicateIndex:
    """An in-memory LSH index over fingerprints, for checking new items against stored ones."""

    def __init__(self, threshold: float = 0.8) -> None:
        self.threshold = threshold
        self._lsh = _lsh_params(threshold)
        self._hashes: dict[int, MinHash] = {}
        self._scheme: str | None = None

    def __len__(self) -> int:
        return len(self._hashes)

    def __contains__(self, doc_id: object) -> bool:
        return doc_id in self._hashes

    def add(self, doc_id: int, m: MinHash) -> None:
        if doc_id in self._hashes:
            return
        scheme = getattr(m, "tidings_scheme", None) or getattr(m, "scheme", None)
        if self._scheme is None:
            self._scheme = scheme
        elif scheme != self._scheme:  # an LSH bucket of one scheme says nothing about another's values
            raise ValueError(f"fingerprints of different schemes in one index: {self._scheme} and {scheme}")
        self._hashes[doc_id] = m
        self._lsh.insert(doc_id, m)

    def query(self, m: MinHash) -> list[tuple[int, float]]:
        """Indexed ids whose estimated Jaccard similarity with ``m`` is at least the threshold,
        most similar first (ties: lowest id first)."""
        hits: list[tuple[int, float]] = []
        if not self._hashes:
            return hits
        scheme = getattr(m, "tidings_scheme", None) or getattr(m, "scheme", None)
        if scheme != self._scheme:
            raise ValueError(f"fingerprints of different schemes: {scheme} against an index of {self._scheme}")
        for key in self._lsh.query(m):
            sim = float(m.jaccard(self._hashes[key]))
            if sim >= self.threshold - 1e-9:
                hits.append((key, sim))
        hits.sort(key=lambda kv: (-kv[1], kv[0]))
        return hits


def find_near_duplicates_in_fingerprints(
    fingerprints: Iterable[tuple[int, MinHash | None]],
    threshold: float = 0.8,
    *,
    never_merge: set[frozenset[int]] | frozenset[frozenset[int]] = frozenset(),
) -> list[tuple[int, int]]:
    """Group fingerprints whose estimated Jaccard similarity reaches ``threshold``.

    Returns ``(duplicate_id, keep_id)`` pairs sorted by duplicate id, where ``keep_id`` is the
    lowest id of the group. Groups are connected components of the similarity graph, built
    strongest edge first; an edge is refused when it would put any ``never_merge`` pair (a user's
    "these are not duplicates") into one group, so that rule holds transitively too.
    ``None`` fingerprints (short texts) are ignored.
    """
    index = NearDuplicateIndex(threshold)
    edges: list[tuple[float, int, int]] = []
    for doc_id, m in sorted(((i, m) for i, m in fingerprints if m is not None), key=lambda x: x[0]):
        if doc_id in index:
            continue
        for other, sim in index.query(m):
            edges.append((sim, other, doc_id))
        index.add(doc_id, m)
    edges.sort(key=lambda e: (-e[0], e[1], e[2]))

    forbidden: dict[int, set[int]] = {}
    for pair in never_merge:
        if len(pair) == 2:
            a, b = tuple(pair)
            forbidden.setdefault(a, set()).add(b)
            forbidden.setdefault(b, set()).add(a)

    parent: dict[int, int] = {}
    members: dict[int, set[int]] = {}

    def find(x: int) -> int:
        parent.setdefault(x, x)
        while parent[x] != x:
            parent[x] = parent[parent[x]]
            x = parent[x]
        return x

    for _sim, a, b in edges:
        ra, rb = find(a), find(b)
        if ra == rb:
            continue
        ma, mb = members.setdefault(ra, {ra}), members.setdefault(rb, {rb})
        if forbidden and any(forbidden.get(x, set()) & mb for x in ma):
            continue
        small, big = (ra, rb) if len(ma) < len(mb) else (rb, ra)
        parent[small] = big
        members[big] |= members.pop(small)

    pairs: list[tuple[int, int]] = []
    for group in members.values():
        if len(group) > 1:
            keep = min(group)
            pairs.extend((d, keep) for d in group if d != keep)
    pairs.sort()
    return pairs


def find_near_duplicates(
    docs: Iterable[tuple[int, str | None]],
    threshold: float = 0.8,
    *,
    never_merge: set[frozenset[int]] | frozenset[frozenset[int]] = frozenset(),
) -> list[tuple[int, int]]:
    """``(duplicate_id, keep_id)`` pairs among ``(id, text)`` docs; see
    :func:`find_near_duplicates_in_fingerprints`. Texts under 200 characters never match."""
    return find_near_duplicates_in_fingerprints(
        ((doc_id, fingerprint(text)) for doc_id, text in docs), threshold, never_merge=never_merge
    )


def estimated_similarity(a: MinHash, b: MinHash) -> float:
    """Estimated Jaccard similarity of two fingerprints (NaN-free, in [0, 1])."""
    sim = float(a.jaccard(b))
    return 0.0 if math.isnan(sim) else sim
