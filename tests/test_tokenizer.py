"""The zoo's character tokenizer round-trips text and survives save/load."""

from transformers import AutoTokenizer

from ias.zoo.tokenizer import STEP_TAG, build_char_tokenizer


def test_round_trip_and_reload(tmp_path):
    tok = build_char_tokenizer()
    text = "Compute 47+18*3-25.\n\n18*3=54 so 47+54-25\n\n\\boxed{76}"
    ids = tok(text)["input_ids"]
    assert ids[0] == tok.bos_token_id and len(ids) == len(text) + 1
    assert tok.decode(ids, skip_special_tokens=True) == text
    tagged = tok(f"1+1=2{STEP_TAG}")["input_ids"]
    assert tagged[-1] == tok.convert_tokens_to_ids(STEP_TAG) and len(tagged) == 7
    tok.save_pretrained(tmp_path)
    again = AutoTokenizer.from_pretrained(tmp_path)
    assert again(text)["input_ids"] == ids


def test_unknown_characters_map_to_unk():
    tok = build_char_tokenizer()
    ids = tok("1€2", add_special_tokens=False)["input_ids"]
    assert ids[1] == tok.unk_token_id and len(ids) == 3
