def test_chat_problems_names_what_breaks_a_conversation() -> None:
    from deepresearch.llm.messages import chat_problems

    call = {"id": "c1", "type": "function", "function": {"name": "todo", "arguments": "{}"}}
    good = [
        {"role": "user", "content": "Q?"},
        {"role": "assistant", "content": "", "reasoning_content": "plan", "tool_calls": [call]},
        {"role": "tool", "tool_call_id": "c1", "content": "ok"},
        {"role": "assistant", "content": "A."},
    ]
    assert chat_problems(good) == [] and chat_problems(good, {"todo"}) == []
    assert chat_problems(good, {"search"}) == [
        "messages[1].tool_calls[0]: calls 'todo', which the tools do not offer"
    ]
    assert chat_problems([*good[:2], good[3]]) == ["messages[2]: tool calls ['c1'] were never answered"]
    assert chat_problems([good[0], {"role": "assistant", "content": " "}]) == [
        "messages[1]: an empty assistant message"
    ]
    bad_args = {**call, "function": {"name": "todo", "arguments": {"a": 1}}}
    assert chat_problems([good[0], {**good[1], "tool_calls": [bad_args]}, good[2]]) == [
        "messages[1].tool_calls[0]: arguments are not a JSON object in a string"
    ]
    assert chat_problems([]) == ["messages: not a non-empty list"]
