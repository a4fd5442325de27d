using System.Text.Json.Nodes;
using Xunit;

namespace Jamba.Server.Tests;

/// <summary><c>response_format</c> (chat) and <c>response_format</c> / <c>guided_json</c> (completions) constrain decoding.</summary>
[Collection(ServerCollection.Name)]
public sealed class StructuredOutputTests(ServerFixture fx)
{
    [Fact]
    public async Task JsonSchemaResponseFormatGivesAValidValue()
    {
        string schema = JsonSchemaCheck.Schemas["person"];
        var (status, body, _) = await ServerFixture.PostAsync(fx.Http, "/v1/chat/completions",
            """{"messages":[{"role":"user","content":"Who are you?"}],"max_tokens":120,"temperature":0.8,"seed":5,"response_format":{"type":"json_schema","json_schema":{"name":"person","strict":true,"schema":""" + schema + "}}}");
        Assert.True(status == 200, body?.ToJsonString());
        string content = (string)body!["choices"]![0]!["message"]!["content"]!;
        Assert.Equal("stop", (string?)body["choices"]![0]!["finish_reason"]);
        var (valid, detail) = JsonSchemaCheck.Validate(schema, content);
        Assert.True(valid, detail);

        (status, body, _) = await ServerFixture.PostAsync(fx.Http, "/v1/chat/completions",
            """{"messages":[{"role":"user","content":"Hi"}],"max_tokens":60,"temperature":0.5,"seed":1,"response_format":{"type":"json_object"}}""");
        Assert.Equal(200, status);
        Assert.IsType<JsonObject>(JsonNode.Parse((string)body!["choices"]![0]!["message"]!["content"]!));
    }

    [Fact]
    public async Task CompletionsTakeResponseFormatAndGuidedJson()
    {
        string schema = JsonSchemaCheck.Schemas["tasks"];
        foreach (var field in new[] { "\"guided_json\":" + schema, "\"response_format\":{\"type\":\"json_schema\",\"json_schema\":{\"name\":\"t\",\"schema\":" + schema + "}}" })
        {
            var (status, body, _) = await ServerFixture.PostAsync(fx.Http, "/v1/completions",
                $$"""{"prompt":"Tasks:","max_tokens":150,"temperature":0.9,"seed":2,{{field}}}""");
            Assert.True(status == 200, body?.ToJsonString());
            var (valid, detail) = JsonSchemaCheck.Validate(schema, (string)body!["choices"]![0]!["text"]!);
            Assert.True(valid, detail);
        }
    }

    [Fact]
    public async Task AnUnsupportedSchemaIsA400NamingTheKeyword()
    {
        var (status, body, _) = await ServerFixture.PostAsync(fx.Http, "/v1/chat/completions",
            """{"messages":[{"role":"user","content":"Hi"}],"max_tokens":5,"response_format":{"type":"json_schema","json_schema":{"name":"x","schema":{"type":"string","pattern":"^a$"}}}}""");
        Assert.Equal(400, status);
        Assert.Contains("'pattern'", (string?)body!["error"]!["message"]);
        Assert.Equal("response_format", (string?)body["error"]!["param"]);
    }
}
