"""The per-process caches of tokenized texts and image sizes give exactly what the uncached calls give, and
notice a changed tokenizer or a rewritten image file."""

from PIL import Image

from genixer import images
from genixer.models import inputs
from genixer.models.tiny import build_tiny_llava, build_tiny_qwen2_vl

TEXTS = ["USER: <image>\nWhat colour is the circle? ASSISTANT: red", "Is there a square?", "Is there a square?", ""]


def test_tokenized_ids_equal_the_tokenizer_s_own_and_follow_a_changed_vocabulary():
    for build in (build_tiny_llava, build_tiny_qwen2_vl):
        _, processor = build()
        tok = processor.tokenizer
        want = [tok(t, add_special_tokens=False)["input_ids"] for t in TEXTS]
        assert inputs._tokenize_unique(tok, TEXTS) == want
        assert inputs._tokenize_unique(tok, TEXTS) == want  # from the cache now
        before = inputs._fingerprint(tok)
        tok.add_tokens(["squarething"])
        assert inputs._fingerprint(tok) != before
        assert inputs._tokenize_unique(tok, ["a squarething"]) == [tok("a squarething", add_special_tokens=False)["input_ids"]]


def test_two_loads_of_one_tokenizer_share_the_cache_and_different_ones_do_not():
    _, a = build_tiny_llava()
    _, b = build_tiny_llava()
    _, q = build_tiny_qwen2_vl()
    assert inputs._fingerprint(a.tokenizer) == inputs._fingerprint(b.tokenizer)
    assert inputs._fingerprint(a.tokenizer) != inputs._fingerprint(q.tokenizer)


def test_image_size_cache_sees_a_rewritten_file(tmp_path):
    p = tmp_path / "x.png"
    Image.new("RGB", (40, 30)).save(p)
    assert images.image_size(p, verify=False) == (40, 30) == images.image_size(p)
    Image.new("RGB", (64, 20)).save(p)  # same path, new bytes (size and mtime change)
    assert images.image_size(p, verify=False) == (64, 20)
    missing = tmp_path / "missing.png"
    try:
        images.image_size(missing, verify=False)
    except Exception as e:  # the reader's own error, not a bare stat failure
        assert "missing.png" in str(e)
    else:
        raise AssertionError("no error for a missing file")
