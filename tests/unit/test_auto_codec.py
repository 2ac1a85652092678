"""wire_codec="auto": a link's codec from its measured bandwidth (routing/codecs.py)."""

from __future__ import annotations

from routing.codecs import FLOAT16_FROM_MBIT, RAW_FROM_MBIT, codec_for


def test_fast_and_unmeasured_links_stay_exact_slower_ones_shrink():
    assert codec_for(None) == "raw"
    assert codec_for(RAW_FROM_MBIT) == "raw" and codec_for(1000.0) == "raw"
    assert codec_for(100.0) == "float16" and codec_for(FLOAT16_FROM_MBIT) == "float16"
    assert codec_for(5.0) == "int8"
