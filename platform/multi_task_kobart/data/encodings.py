"""How a seed file's bytes become text: UTF-8 unless the user names another encoding.

Korean files often arrive in CP949 (EUC-KR), or in UTF-16 (Excel's "Unicode text"). Read as
UTF-8, every row of such a file would be rejected as "invalid UTF-8", one error per row; so a
file that is wholly in another encoding is refused as a whole, in one line that says how to
read it (``--encoding`` / ``data.encoding``). A file of mixed encodings is read as UTF-8: only
its bad rows are wrong, and the validator names them.
"""

from __future__ import annotations

import codecs
import re

from multi_task_kobart.data.validation import DataError

#: The encoding seed files are read in unless the user names another (``data.encoding``).
DEFAULT_ENCODING = "utf-8"
_UTF8_NAMES = ("utf-8", "utf-8-sig")
_UTF16_BOMS = (codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)
_HANGUL = re.compile("[\uac00-\ud7a3\u3131-\u318e]")  # syllables and compatibility jamo


def check_encoding(name: str, key: str = "encoding") -> str:
    """The canonical name of text encoding ``name`` ("UTF8" -> "utf-8", "EUC-KR" -> "euc_kr");
    ``key`` is how the setting is named in the error."""
    try:
        "a".encode(name)  # also refuses codecs that are not text encodings (base64, rot13)
        return codecs.lookup(name).name
    except (LookupError, TypeError, UnicodeError):
        raise DataError(f"{key}={name!r} is not a text encoding; use e.g. 'utf-8' or 'cp949'.") from None


def decode_text(data: bytes, file: str, encoding: str = DEFAULT_ENCODING) -> str:
    """The text of seed file ``file`` (its name, for messages), from its bytes.

    UTF-8 is decoded with ``surrogateescape``, so a stray bad byte is one row's error; a file
    that is wholly in another encoding raises ``DataError`` (see the module docstring). Any
    other encoding is one the user chose for the whole file, so it is decoded strictly: a byte
    it cannot decode raises ``DataError`` with the line, rather than a row error that would
    call it invalid UTF-8.
    """
    encoding = check_encoding(encoding)
    if encoding not in _UTF8_NAMES:
        try:
            return data.decode(encoding).removeprefix("\ufeff")  # a byte-order mark is not data
        except UnicodeDecodeError as exc:
            line = data[:exc.start].decode(encoding, "replace").count("\n") + 1
            raise DataError(f"{file}:{line}: byte 0x{data[exc.start]:02x} is not valid "
                            f"{encoding}; is the file in another encoding?") from None
    if data.startswith(codecs.BOM_UTF8):  # a UTF-8 byte-order mark is not part of the data
        data = data[len(codecs.BOM_UTF8):]
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        pass
    if data.startswith(_UTF16_BOMS):
        raise DataError(f"{file} looks like UTF-16 (it starts with a UTF-16 byte-order "
                        f"mark): re-save it as UTF-8 or pass --encoding utf-16")
    if _looks_like_cp949(data):
        raise DataError(f"{file} looks like CP949 (EUC-KR): re-save it as UTF-8 or "
                        f"pass --encoding cp949")
    return data.decode("utf-8", "surrogateescape")


def _looks_like_cp949(data: bytes) -> bool:
    """Every line beyond ASCII reads as CP949, none as UTF-8 (that would be a file of mixed
    encodings), and there is Hangul. Splitting CP949 at "\\n" is safe: no byte pair holds 0x0a."""
    hangul = False
    for line in data.split(b"\n"):
        if line.isascii():
            continue
        try:
            line.decode("utf-8")
            return False
        except UnicodeDecodeError:
            pass
        try:
            hangul = hangul or _HANGUL.search(line.decode("cp949")) is not None
        except UnicodeDecodeError:
            return False
    return hangul
