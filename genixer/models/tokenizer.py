"""Offline word-level tokenizer for the shapes-world texts.

Design (why it looks like this):
- WordLevel over the corpus words keeps sequences short and needs no training. Case is kept (no
  lowercasing) so that texts round-trip exactly.
- Spaces are folded into the following word Llama-style ("▁What"), by a normalizer that maps " " to "▁"
  and prepends one "▁" to every text segment; the Metaspace decoder turns "▁" back into spaces and drops
  the prepended one, so decode(encode(text)) is exact, including runs of spaces and newlines.
- Every digit is its own token ("0.125" -> "0" "." "1" "2" "5"), so boxes/points use a tiny closed vocabulary;
  with ``coordinate_tokens`` every value of the box format's grid (0.000 .. 1.000, 3 decimals, as
  `genixer.boxes` writes them) is instead one token, so a coordinate is one prediction, not five.
- The prepended "▁" doubles as the prompt/target separator: tokenizing prompt and target separately and
  concatenating the ids equals tokenizing ``prompt + " " + target``.
- Fuyu compatibility: FuyuProcessor tokenizes the image placeholder string ("|SPEAKER|...|NEWLINE|<s>")
  and drops its first id, assuming a sentencepiece-style prefix piece. So "|SPEAKER|" and "|NEWLINE|" are
  plain vocabulary words (not added tokens): the placeholder segment then gets the "▁" prefix, which is the
  id Fuyu drops. Its begin-of-answer token "<0x04>" and the pad id 0 (Fuyu forces pad_token_id = 0) are
  provided as specials, so the same tokenizer serves the LLaVA generator and the Fuyu judge.
"""

from __future__ import annotations

import string
from collections.abc import Iterable

from tokenizers import AddedToken, Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers
from tokenizers.processors import TemplateProcessing
from transformers import PreTrainedTokenizerFast

SPACE = "▁"
PAD, BOS, EOS, UNK, IMAGE, BOA = "<pad>", "<s>", "</s>", "<unk>", "<image>", "<0x04>"
SPECIAL_TOKENS = [PAD, BOS, EOS, UNK, IMAGE, BOA]  # PAD first: id 0
FUYU_WORDS = ["|SPEAKER|", "|NEWLINE|"]

_FUYU_ALT = "|".join(w.replace("|", r"\|") for w in FUYU_WORDS)
# One optional leading "▁" then: a Fuyu placeholder word, a run of letters, ONE digit, or ONE other char.
_SPLIT_BODY = rf"{_FUYU_ALT}|{SPACE}?[^\W\d_]+|{SPACE}?\d|{SPACE}?(?!{_FUYU_ALT})[^\w{SPACE}]|{SPACE}?_|{SPACE}"
# A coordinate value of the box format's grid, not part of a longer number (0.000 .. 1.000).
_COORD = rf"{SPACE}?(?<![\d.])(?:0\.\d{{3}}|1\.000)(?![\d])"
COORDINATES = [f"{i / 1000:.3f}" for i in range(1001)]


def _normalizer() -> normalizers.Normalizer:
    return normalizers.Sequence([normalizers.Prepend(SPACE), normalizers.Replace(" ", SPACE)])


def _pre_tokenizer(coordinate_tokens: bool = False) -> pre_tokenizers.PreTokenizer:
    body = f"{_COORD}|{_SPLIT_BODY}" if coordinate_tokens else _SPLIT_BODY
    return pre_tokenizers.Split(Regex(body), behavior="isolated")


def build_tokenizer(texts: Iterable[str], coordinate_tokens: bool = False) -> PreTrainedTokenizerFast:
    """Tokenizer whose vocabulary is every word of ``texts`` plus all printable ASCII characters
    (and with ``coordinate_tokens`` each of :data:`COORDINATES`, bare and after a space)."""
    norm, pre = _normalizer(), _pre_tokenizer(coordinate_tokens)
    vocab: dict[str, int] = {}
    for tok in SPECIAL_TOKENS + FUYU_WORDS:
        vocab.setdefault(tok, len(vocab))
    # Every ASCII character, bare and after a space, is in the vocabulary, so digits, punctuation and
    # one-letter words are always known; only an unseen multi-letter word becomes <unk>.
    for ch in string.ascii_letters + string.digits + string.punctuation + "\n\t":
        for piece in (ch, SPACE + ch):
            vocab.setdefault(piece, len(vocab))
    vocab.setdefault(SPACE, len(vocab))
    for value in COORDINATES if coordinate_tokens else ():
        for piece in (value, SPACE + value):
            vocab.setdefault(piece, len(vocab))
    words = set()
    for text in texts:
        for piece, _ in pre.pre_tokenize_str(norm.normalize_str(text)):
            # Both spellings: a word seen mid-line may start a line elsewhere ("\nQuestion").
            bare = piece.removeprefix(SPACE)
            if bare:
                words.update((bare, SPACE + bare))
    for word in sorted(words):  # sorted: ids do not depend on the order of ``texts``
        vocab.setdefault(word, len(vocab))

    tok = Tokenizer(models.WordLevel(vocab, unk_token=UNK))
    tok.normalizer = norm
    tok.pre_tokenizer = pre
    tok.decoder = decoders.Metaspace(replacement=SPACE, prepend_scheme="first", split=False)
    tok.add_special_tokens([AddedToken(t, special=True, normalized=False) for t in SPECIAL_TOKENS])
    # BOS is added by the tokenizer (as for Llama); EOS is appended explicitly by the training collate.
    tok.post_processor = TemplateProcessing(
        single=f"{BOS} $A", pair=f"{BOS} $A $B", special_tokens=[(BOS, vocab[BOS])]
    )
    return PreTrainedTokenizerFast(
        tokenizer_object=tok,
        bos_token=BOS,
        eos_token=EOS,
        pad_token=PAD,
        unk_token=UNK,
        extra_special_tokens={"image_token": IMAGE},
        padding_side="left",
        model_input_names=["input_ids", "attention_mask"],
    )
