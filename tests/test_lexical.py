"""LexicalIndex: analyzer, incremental updates, persistence, single writer."""

import pytest

from kbchat.errors import StoreBusy
from kbchat.lexical import LexicalIndex, analyze


def test_analyze():
    assert analyze("NVIDIA A100, 80GB!") == ["nvidia", "a100", "80gb"]
    assert analyze("推理优化") == ["推理", "理优", "优化"]
    assert analyze("大") == ["大"]
    assert analyze("GPU 的 張量核心") == ["gpu", "的", "張量", "量核", "核心"]
    assert analyze("カタカナ") == ["カタ", "タカ", "カナ"]
    assert analyze("a+b (c) [d]: \"e\"") == ["a", "b", "c", "d", "e"]


def test_incremental_and_persisted(tmp_path):
    path = tmp_path / "lex"
    ix = LexicalIndex(path)
    ix.add([("a-1-0", "a", "The A100 GPU has 80GB of memory"), ("a-1-9", "a", "Tensor cores")])
    assert [pid for pid, _ in ix.search("a100 memory", 5)] == ["a-1-0"]
    ix.add([("b-1-0", "b", "張量核心加速推理"), ("b-2-0", "b", "memory bandwidth 2,039 GB/s")])
    assert len(ix) == 4
    assert ix.search("張量核心", 5)[0][0] == "b-1-0"
    res = ix.search("memory", 5)
    assert {pid for pid, _ in res} == {"a-1-0", "b-2-0"}
    assert res[0][1] >= res[1][1]
    ix.delete_doc("a")
    assert len(ix) == 2
    assert ix.search("a100", 5) == []
    assert ix.search("AND OR ( ) : * ~ \" ", 5) == []  # special characters are not query syntax
    ix.close()
    again = LexicalIndex(path)
    assert len(again) == 2
    assert again.search("bandwidth", 3)[0][0] == "b-2-0"
    again.close()


def test_single_writer_readers_never_blocked(tmp_path):
    ix = LexicalIndex(tmp_path / "lex")
    other = LexicalIndex(tmp_path / "lex")          # a second process may always open and search
    held = ix._write()                               # one writer at a time...
    with pytest.raises(StoreBusy):
        other.add([("x-1-0", "x", "zebra port")])
    assert other.search("zebra", 3) == []
    LexicalIndex._release(held)                      # ...and the lock is free again once done
    other.add([("x-1-0", "x", "zebra port")])
    assert ix.search("zebra", 3)[0][0] == "x-1-0"
    ix.close()
    other.close()
