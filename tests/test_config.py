import json

import pytest

from sevila.config import PRESETS, SeViLAConfig


@pytest.mark.parametrize("name", sorted(PRESETS))
def test_presets_round_trip_through_json(name, tmp_path):
    config = SeViLAConfig.preset(name)
    path = tmp_path / "config.json"
    config.save(path)
    assert SeViLAConfig.load(path) == config
    assert json.loads(path.read_text())["model_type"] == "sevila"


def test_paper_preset_matches_the_reference_model():
    config = SeViLAConfig.preset("paper")
    assert (config.vision.image_size, config.vision.patch_size) == (224, 14)
    assert (config.vision.hidden_size, config.vision.num_hidden_layers, config.vision.intermediate_size) == (
        1408,
        39,
        6144,
    )
    assert (config.qformer.hidden_size, config.qformer.num_hidden_layers, config.qformer.num_query_tokens) == (
        768,
        12,
        32,
    )
    assert config.qformer.cross_attention_frequency == 2
    assert config.language_model.d_model == 2048 and config.language_model.num_layers == 24
    assert config.language_model.dense_act_fn == "gelu" and not config.language_model.tie_word_embeddings
    assert (config.num_frames, config.num_keyframes, config.max_text_length) == (32, 4, 77)
    assert config.option_letters == "ABCDE" and config.vision_layernorm_eps == 1e-5


def test_t5_config_keeps_the_exact_gelu_override():
    t5 = SeViLAConfig.preset("tiny").to_hf_t5_config()
    assert t5.dense_act_fn == "gelu" and t5.is_gated_act


def test_unknown_preset_and_fields_are_named(tmp_path):
    with pytest.raises(ValueError, match="unknown SeViLA preset 'huge'"):
        SeViLAConfig.preset("huge")
    data = SeViLAConfig.preset("tiny").to_dict()
    data["vision"]["depth"] = 3
    path = tmp_path / "config.json"
    path.write_text(json.dumps(data))
    with pytest.raises(ValueError, match=r"config.json: unknown fields in config.vision: \['depth'\]"):
        SeViLAConfig.load(path)
    path.write_text("{not json")
    with pytest.raises(ValueError, match="config.json: not valid JSON"):
        SeViLAConfig.load(path)


def test_a_vit_built_from_scratch_is_initialised_at_the_usual_scale():
    """transformers' BLIP-2 vision default (1e-10) would leave a ViT trained from scratch all but dead."""
    import torch
    from transformers import Blip2VisionModel

    torch.manual_seed(0)
    vit = Blip2VisionModel(SeViLAConfig.preset("tiny").to_hf_vision_config())
    for name in ("embeddings.patch_embedding.weight", "encoder.layers.0.mlp.fc1.weight"):
        assert 0.01 < float(vit.get_parameter(name).detach().std()) < 0.03, name


def test_option_letters_have_one_home():
    """The prompts' letters are the config's and the records' limit; a saved config may repeat them (earlier
    versions wrote them) but not change them, since prompt text and scored tokens would then disagree."""
    from sevila import prompts
    from sevila.data.records import MAX_OPTIONS

    config = SeViLAConfig.preset("tiny")
    assert config.option_letters == prompts.OPTION_LETTERS and config.num_options == MAX_OPTIONS == 5
    data = config.to_dict()
    assert "option_letters" not in data
    assert SeViLAConfig.from_dict({**data, "option_letters": prompts.OPTION_LETTERS}) == config
    with pytest.raises(
        ValueError, match="option_letters 'abcde': SeViLA's prompts and scored tokens use the letters ABCDE"
    ):
        SeViLAConfig.from_dict({**data, "option_letters": "abcde"})


def test_positions_by_key_keeps_first_appearance_order():
    from sevila.utils.batching import positions_by_key

    assert positions_by_key([5, 4, 5, 2, 4]) == {5: [0, 2], 4: [1, 4], 2: [3]}
    assert positions_by_key([]) == {}
