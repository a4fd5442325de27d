namespace Jamba.Testing;

/// <summary>Recorded tool-call outputs of the models, shared by the core's parser and chat-client tests and the SK tests.</summary>
public static class RecordedToolOutputs
{
    // Recorded outputs, in the form each template trains the model to write (see the templates' tool_call_roundtrip
    // cases): Jamba 1.7 writes after "<|assistant|>" (hence the leading space), Reasoning 3B after "<think>\n".
    public const string Jamba17TwoCalls =
        " <tool_calls>[\n    {\"name\": \"get_weather\", \"arguments\": {\"location\": {\"city\": \"Zürich\", \"country_code\": \"CH\"}, \"unit\": \"celsius\", \"days\": 1}},\n    {\"name\": \"search_documents\", \"arguments\": {\"query\": \"Zürich Wetter\", \"top_k\": 3}}\n]</tool_calls>";
    public const string Jamba17TextThenCall =
        " Let me check that.\n<tool_calls>[\n    {\"name\": \"get_weather\", \"arguments\": \"{\\\"location\\\": {\\\"city\\\": \\\"Oslo\\\"}}\"}\n]</tool_calls>";
    public const string Reasoning3BTwoCalls =
        "The user wants the weather and documents.\nI will call both tools.\n</think>\n\n<tool_call>\n{\"name\": \"get_weather\", \"arguments\": {\"location\": {\"city\": \"Zürich\"}}}\n</tool_call>\n<tool_call>\n{\"name\": \"search_documents\", \"arguments\": {\"query\": \"Zürich Wetter\"}}\n</tool_call>";
    public const string Jamba17Malformed =
        " <tool_calls>[\n    {\"name\": \"get_weather\", \"arguments\": {\"location\": {\"city\": \"Zürich\"}]\n]</tool_calls>";
}
