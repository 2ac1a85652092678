"""How a long prefill is cut into chunks (routing/prefill.py: plan_chunks)."""

from __future__ import annotations

from routing.prefill import Chunk, plan_chunks


def test_short_steps_and_chunking_off_go_whole():
    assert plan_chunks(100, 1, 256) == [Chunk(0, 100, 1, 1)]
    assert plan_chunks(2048, 0, 0) == [Chunk(0, 2048, 0, 2048)]
    assert plan_chunks(3, 5, 0) == [Chunk(0, 3, 5, 3)]


def test_a_long_prefill_keeping_one_position_gets_it_from_the_last_chunk_only():
    chunks = plan_chunks(1000, 1, 256)
    assert [(c.start, c.end) for c in chunks] == [(0, 256), (256, 512), (512, 768), (768, 1000)]
    assert [c.wanted for c in chunks] == [0, 0, 0, 1]
    assert all(c.keep == 1 for c in chunks)  # a chunk nobody keeps still returns one position (dropped)


def test_every_position_kept_and_a_kept_window_across_chunks():
    assert all(c.keep == 0 and c.wanted == c.end - c.start for c in plan_chunks(600, 0, 256))
    chunks = plan_chunks(600, 400, 256)  # positions 200..599 kept
    assert [(c.keep, c.wanted) for c in chunks] == [(56, 56), (0, 256), (0, 88)]
    assert sum(c.wanted for c in chunks) == 400


def test_at_most_max_chunks_of_equal_size():
    chunks = plan_chunks(10_000, 1, 256, max_chunks=8)
    assert len(chunks) == 8 and {c.end - c.start for c in chunks[:-1]} == {1250}
    assert chunks[-1].end == 10_000


def test_chunks_grow_on_fast_links_and_slow_passes_and_never_below_the_least():
    from routing.prefill import chunk_size

    # 2048 tokens, 6 stages, 5 ms passes: 20 Mbit/s of a 2 KB token -> ~50 tokens; 1 Gbit/s -> ~360
    slow, fast = chunk_size(2048, 6, 0.005, 2048 / 2.5e6, 16), chunk_size(2048, 6, 0.005, 2048 / 125e6, 16)
    assert 40 < slow < 60 and 300 < fast < 400
    assert chunk_size(2048, 6, 0.05, 2048 / 2.5e6, 16) > slow  # slower passes: fewer of them
    assert chunk_size(2048, 6, 0.005, 2048 / 2.5e6, 64) == 64  # the configured least
    assert chunk_size(2048, 6, 0.0, 1.0, 64) == 64 and chunk_size(2048, 6, 0.005, 1.0, 0) == 0  # no figures; off
