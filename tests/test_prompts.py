import pytest

from sevila import prompts

Q = "why did the boy clap?"
OPTS = ["happy.", "sad.", "excited.", "bored.", "tired."]


def test_multiple_choice_prompts_are_exact():
    assert prompts.qa_prompt(Q, OPTS[:2]) == (
        "Question: why did the boy clap? Option A: happy. Option B: sad. Considering the information presented "
        "in the frame, select the correct answer from the options."
    )
    assert prompts.loc_prompt(Q, OPTS[:3]) == (
        "Question: why did the boy clap? Options: (happy. sad. excited. ) Does the information within the frame "
        "provide the necessary details to accurately answer the given question?"
    )
    assert prompts.answer_target(2) == "Option C"


def test_vlep_prompts_have_no_question_and_embed_the_answerer_prompt():
    qa = prompts.vlep_qa_prompt(["Ross will sit.", "Ross will run."])
    assert qa == (
        "Upon observing the provided frames, what is the most probable subsequent event? "
        "Option A: Ross will sit. Option B: Ross will run."
    )
    assert prompts.vlep_loc_prompt(["Ross will sit.", "Ross will run."]) == (
        qa + " Does the information within the frame provide the necessary details to predict next event?"
    )
    with pytest.raises(ValueError, match="exactly 2 options"):
        prompts.vlep_qa_prompt(OPTS[:3])


def test_qvhighlights_query_gets_a_period_once():
    expected = (
        "Question: a dog runs. Option A: yes. Option B: no. Does the information within the frame provide the "
        "necessary details to accurately answer the given question?"
    )
    assert prompts.qvhighlights_loc_prompt("a dog runs") == expected
    assert prompts.qvhighlights_loc_prompt("a dog runs.") == expected
    assert prompts.frame_labels_target([False, True, True]) == "no_yes_yes"


def test_demo_prompts_have_no_space_after_the_colon():
    qa = prompts.demo_qa_prompt("what is it", ["a cat", "a dog."])
    assert qa.startswith("Question: what is it Option A:a cat. Option B:a dog. Considering")
    assert prompts.demo_loc_prompt("what is it", ["a cat", "a dog."]).endswith("answer the given question?")


def test_prompts_for_dispatches_by_dataset():
    assert prompts.prompts_for("star", Q, OPTS[:4]) == (prompts.qa_prompt(Q, OPTS[:4]), prompts.loc_prompt(Q, OPTS[:4]))
    assert prompts.prompts_for("vlep", None, OPTS[:2])[0].startswith("Upon observing")
    with pytest.raises(ValueError, match="unknown prompt style 'msrvtt'"):
        prompts.prompts_for("msrvtt", Q, OPTS)


def test_the_synthetic_style_is_the_multiple_choice_wording():
    """The demo model was trained on these strings: the synthetic world's own style must not change them."""
    generic = (prompts.qa_prompt(Q, OPTS[:4]), prompts.loc_prompt(Q, OPTS[:4]))
    assert prompts.prompts_for("synthetic", Q, OPTS[:4]) == generic == prompts.prompts_for("nextgqa", Q, OPTS[:4])
    assert prompts.PROMPT_STYLES[-2:] == ("qvhighlights", "demo")  # VideoQA offers all styles but these two


@pytest.mark.parametrize("options, message", [(["only one."], "at least 2 options"), (OPTS + ["six."], "at most 5")])
def test_bad_option_counts_are_rejected(options, message):
    with pytest.raises(ValueError, match=message):
        prompts.qa_prompt(Q, options)
