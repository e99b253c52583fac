"""LexicalIndex: analyzer, incremental updates, persistence, single writer."""

import pytest

from kbchat.errors import StoreBusy
from kbchat.search.lexical import LexicalIndex, analyze, analyze_query


def test_analyze():
    assert analyze("NVIDIA A100, 80GB!") == ["nvidia", "a100", "80gb"]
    assert analyze("推理优化") == ["推理", "优化"]  # jieba words
    assert analyze("大") == ["大"]
    assert analyze("カタカナ") == ["カタ", "タカ", "カナ"]  # kana: character bigrams
    assert analyze("a+b (c) [d]: \"e\"") == ["a", "b", "c", "d", "e"]


def test_traditional_and_simplified_chinese_meet():
    assert analyze("張量核心") == analyze("张量核心") == ["张量", "核心"]
    assert analyze("國網中心的建議") == analyze("国网中心的建议")


def test_latin_words_stop_where_cjk_starts():
    # "\w" also matches Han characters: these used to be single tokens that matched nothing
    assert analyze("GPU與雲端主機")[:1] == ["gpu"]
    assert "9pf" in analyze("台灣杉二號 9PF") and "108" in analyze("108年10月上線")
    assert "flashattention" in analyze("FlashAttention提出两种方法")


def test_question_words_dropped_from_queries_only():
    assert "什么" in analyze("知识生成提示的公式是什么？")
    q = analyze_query("知识生成提示的公式是什么？")
    assert "什么" not in q and "的" not in q and "公式" in q
    assert analyze_query("什麼") == ["什么"]  # nothing else left: kept


def test_index_of_an_older_analyzer_is_stale_until_rebuilt(tmp_path):
    path = tmp_path / "lex"
    ix = LexicalIndex(path)
    assert not ix.stale()
    ix.add([("a-1-0", "a", "張量核心加速推理")])
    (path / "kbchat-analyzer").unlink()  # as written before the analyzer had a version
    old = LexicalIndex(path)
    assert old.stale()
    old.rebuild([("a-1-0", "a", "張量核心加速推理"), ("a-2-0", "a", "memory bandwidth")])
    assert not old.stale() and len(old) == 2
    assert old.search("张量核心", 5)[0][0] == "a-1-0"
    assert not LexicalIndex(path).stale()


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


def test_warm_up_loads_the_analyzer_once_in_the_background():
    import kbchat.search.lexical as L

    L.warm_up()
    first = L._warming
    if first is not None:
        first.join(timeout=60)
    L.warm_up()  # loaded: nothing more is started
    assert L._warming is first and L._t2s is not None and L._jieba is not None
    assert L.analyze("幽門桿菌怎麼治療") == ["幽门", "杆菌", "怎么", "治疗"]
