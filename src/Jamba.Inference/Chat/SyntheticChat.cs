using System.Globalization;
using System.Text;
using System.Text.Json;
using System.Text.Json.Nodes;
using Microsoft.Extensions.AI;

namespace Jamba.Inference.Chat;

/// <summary>One synthetic conversation: the messages (its assistant turns are what a model learns to write) and the request
/// options it was made under (tools, documents, citation mode, JSON mode), exactly as a caller of <see cref="JambaChatClient"/>
/// would pass them.</summary>
/// <param name="Kind">The family: <c>chat</c>, <c>tool_call</c>, <c>tool_answer</c>, <c>document</c>, <c>json</c>.</param>
/// <param name="Messages">The conversation, ending with an assistant turn.</param>
/// <param name="Options">The request options (tools, documents, knobs).</param>
/// <param name="Expected">What a greedy answer to the conversation without its last turn must contain (for evaluation):
/// the last assistant turn's text, or for a tool call the calls as <c>name(json)</c>, or for a document answer the quote.</param>
public sealed record SyntheticConversation(string Kind, IReadOnlyList<ChatMessage> Messages, ChatOptions Options, string Expected);

/// <summary>
/// A seeded generator of synthetic chat conversations for training a small Jamba to follow the Jamba 1.7 chat format: plain
/// turns, tool definitions → <c>&lt;tool_calls&gt;</c> → tool results → an answer that restates them, documents → an answer
/// that quotes the sentence the question is about (with citations in citation mode), and JSON answers. The same seed gives
/// the same conversations. The conversations are MEAI messages and options; <see cref="ChatCorpus"/> renders them through
/// a checkpoint's chat template with the library's own formatter.
/// </summary>
/// <remarks>The answer formats are rigid on purpose (a tiny model learns them greedily): a tool answer restates the tool's
/// result; a document answer is <c>The document says: "…"</c>, a verbatim span of the document from the question's key phrase
/// to the end of its sentence. Names and values are drawn from lists and from made-up words, so that copying (arguments from
/// the user's message, results into the answer, quotes from documents) is learnt rather than a fixed set of strings.</remarks>
public sealed class SyntheticChat
{
    private readonly Random _rng;
    private readonly IReadOnlyList<string> _prose;

    /// <summary>Creates a generator.</summary>
    /// <param name="seed">The seed (the same seed gives the same conversations).</param>
    /// <param name="prose">Optional paragraphs of real prose used as document texts besides the made-up ones.</param>
    public SyntheticChat(int seed, IReadOnlyList<string>? prose = null)
    {
        _rng = new Random(seed);
        _prose = prose ?? [];
    }

    /// <summary>Splits a plain-text corpus into paragraphs usable as document texts (40–1,200 characters, newlines folded).</summary>
    public static List<string> ProseParagraphs(string text) =>
        text.Replace("\r\n", "\n", StringComparison.Ordinal).Split("\n\n", StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries)
            .Select(p => string.Join(' ', p.Split((char[])['\n', ' '], StringSplitOptions.RemoveEmptyEntries)))
            .Where(p => p.Length is >= 200 and <= 1200 && SplitSentences(p).Count >= 2).ToList();

    /// <summary><paramref name="count"/> conversations, the families mixed in fixed proportions.</summary>
    /// <param name="count">How many conversations.</param>
    /// <param name="copyFraction">The share (0 to 1) of short copy drills (family <c>copy</c>: the answer repeats or extracts a
    /// span of the user's message verbatim: made-up words, names, codes, cities, phrases of the prose). They are cheap in
    /// tokens and dense in the copying that tool arguments, tool answers and quotes need; 0 keeps the other families'
    /// proportions and draws exactly what earlier versions drew.</param>
    public List<SyntheticConversation> Generate(int count, double copyFraction = 0)
    {
        if (copyFraction is < 0 or > 1 || double.IsNaN(copyFraction)) throw new ArgumentOutOfRangeException(nameof(copyFraction), copyFraction, "The copy-drill share must be between 0 and 1.");
        var list = new List<SyntheticConversation>(count);
        for (int i = 0; i < count; i++)
        {
            if (copyFraction > 0 && _rng.NextDouble() < copyFraction)
            {
                list.Add(CopyDrill());
                continue;
            }
            double r = _rng.NextDouble();
            list.Add(r switch
            {
                < 0.10 => Chat(),
                < 0.34 => ToolCall(),
                < 0.56 => ToolAnswer(),
                < 0.92 => Document(),
                _ => Json(),
            });
        }
        return list;
    }

    // ---------------------------------------------------------------- vocabulary

    private static readonly string[] Cities =
    [
        "Oslo", "Lisbon", "Paris", "Berlin", "Madrid", "Rome", "Vienna", "Prague", "Warsaw", "Zürich", "Geneva", "Dublin",
        "London", "Edinburgh", "Amsterdam", "Brussels", "Copenhagen", "Stockholm", "Helsinki", "Reykjavik", "Athens", "Istanbul",
        "Cairo", "Nairobi", "Lagos", "Cape Town", "Tokyo", "Osaka", "Seoul", "Beijing", "Shanghai", "Singapore", "Bangkok",
        "Mumbai", "Delhi", "Sydney", "Melbourne", "Auckland", "Toronto", "Montreal", "Vancouver", "New York", "Boston",
        "Chicago", "Denver", "Seattle", "San Francisco", "Los Angeles", "Mexico City", "Lima", "Bogotá", "Santiago",
        "Buenos Aires", "São Paulo", "Rio de Janeiro", "Budapest", "Bucharest", "Sofia", "Tallinn", "Riga", "Vilnius",
        "Kraków", "Munich", "Hamburg", "Milan", "Naples", "Porto", "Seville", "Valencia", "Lyon", "Marseille", "Bergen",
        "Tromsø", "Gothenburg", "Dubai", "Doha", "Tel Aviv", "Hanoi", "Manila", "Jakarta", "Kyoto", "Honolulu", "Anchorage",
    ];

    private static readonly Dictionary<string, string> Zones = new()
    {
        ["Oslo"] = "Europe/Oslo", ["Lisbon"] = "Europe/Lisbon", ["Paris"] = "Europe/Paris", ["Berlin"] = "Europe/Berlin",
        ["Madrid"] = "Europe/Madrid", ["Rome"] = "Europe/Rome", ["Vienna"] = "Europe/Vienna", ["Prague"] = "Europe/Prague",
        ["Warsaw"] = "Europe/Warsaw", ["Zürich"] = "Europe/Zurich", ["Dublin"] = "Europe/Dublin", ["London"] = "Europe/London",
        ["Amsterdam"] = "Europe/Amsterdam", ["Brussels"] = "Europe/Brussels", ["Copenhagen"] = "Europe/Copenhagen",
        ["Stockholm"] = "Europe/Stockholm", ["Helsinki"] = "Europe/Helsinki", ["Athens"] = "Europe/Athens",
        ["Istanbul"] = "Europe/Istanbul", ["Cairo"] = "Africa/Cairo", ["Nairobi"] = "Africa/Nairobi", ["Lagos"] = "Africa/Lagos",
        ["Tokyo"] = "Asia/Tokyo", ["Seoul"] = "Asia/Seoul", ["Shanghai"] = "Asia/Shanghai", ["Singapore"] = "Asia/Singapore",
        ["Bangkok"] = "Asia/Bangkok", ["Sydney"] = "Australia/Sydney", ["Auckland"] = "Pacific/Auckland",
        ["Toronto"] = "America/Toronto", ["Vancouver"] = "America/Vancouver", ["New York"] = "America/New_York",
        ["Chicago"] = "America/Chicago", ["Denver"] = "America/Denver", ["Los Angeles"] = "America/Los_Angeles",
        ["Mexico City"] = "America/Mexico_City", ["Lima"] = "America/Lima", ["Bogotá"] = "America/Bogota",
        ["Buenos Aires"] = "America/Argentina/Buenos_Aires", ["São Paulo"] = "America/Sao_Paulo", ["Budapest"] = "Europe/Budapest",
        ["Bucharest"] = "Europe/Bucharest", ["Tallinn"] = "Europe/Tallinn", ["Riga"] = "Europe/Riga", ["Dubai"] = "Asia/Dubai",
        ["Honolulu"] = "Pacific/Honolulu", ["Reykjavik"] = "Atlantic/Reykjavik", ["Jakarta"] = "Asia/Jakarta",
    };

    private static readonly string[] FirstNames =
    [
        "Anna", "Ben", "Clara", "David", "Emma", "Farid", "Grace", "Hugo", "Ines", "Jonas", "Kenji", "Laila", "Marco", "Nora",
        "Omar", "Priya", "Quinn", "Rosa", "Sven", "Tara", "Umar", "Vera", "Wen", "Ximena", "Yusuf", "Zoe", "Ingrid", "Pedro",
        "Aiko", "Lars", "Maya", "Noah", "Olga", "Rahul", "Sofia", "Tomas", "Elif", "Mateo", "Hana", "Kofi",
    ];

    private static readonly string[] LastNames =
    [
        "Berg", "Costa", "Dubois", "Eriksen", "Fischer", "Garcia", "Hansen", "Ito", "Jensen", "Kowalski", "Lopez", "Moreau",
        "Nakamura", "Olsen", "Petrov", "Quist", "Rossi", "Silva", "Tanaka", "Varga", "Weber", "Young", "Novak", "Haddad",
    ];

    private static readonly string[] Conditions = ["sunny", "cloudy", "rainy", "windy", "snowing", "foggy", "clear", "stormy", "partly cloudy", "drizzling"];
    private static readonly string[] Syllables = ["ka", "lo", "mi", "ra", "ven", "tor", "sel", "dun", "bri", "quo", "zan", "fel", "mar", "nis", "pol", "tha", "gri", "wen", "ost", "lum", "cor", "dal", "vik", "sha"];
    private static readonly string[] Topics = ["bridge", "harbour", "library", "festival", "railway", "market", "museum", "river", "school", "garden", "tower", "mine", "factory", "lighthouse", "orchard", "cathedral", "canal", "observatory"];
    private static readonly string[] Nouns = ["price", "score", "status", "balance", "rating", "forecast", "capacity", "address", "owner", "colour", "height", "speed", "budget", "deadline", "author", "language", "altitude"];
    private static readonly string[] Things = ["order", "package", "ticket", "account", "invoice", "project", "device", "book", "song", "player", "team", "ship", "planet", "recipe", "course", "flight", "server", "album"];
    private static readonly string[] Colours = ["red", "blue", "green", "amber", "silver", "violet", "black", "white", "golden", "grey"];

    private string Pick(IReadOnlyList<string> items) => items[_rng.Next(items.Count)];
    private bool Chance(double p) => _rng.NextDouble() < p;
    private int Int(int min, int maxInclusive) => _rng.Next(min, maxInclusive + 1);

    /// <summary>A made-up capitalised word ("Velmora").</summary>
    private string Made()
    {
        var sb = new StringBuilder();
        int n = Int(2, 3);
        for (int i = 0; i < n; i++) sb.Append(Pick(Syllables));
        return char.ToUpperInvariant(sb[0]) + sb.ToString(1, sb.Length - 1);
    }

    private string Place() => Chance(0.6) ? Pick(Cities) : Made();
    private string Person() => Pick(FirstNames) + " " + (Chance(0.7) ? Pick(LastNames) : Made());
    private string Code() => new string([(char)('A' + _rng.Next(26)), (char)('A' + _rng.Next(26)), (char)('A' + _rng.Next(26))]) + (Chance(0.5) ? "" : "-" + Int(10, 999).ToString(CultureInfo.InvariantCulture));
    private string Time() => $"{Int(2024, 2026)}-{Int(1, 12):00}-{Int(1, 28):00} {Int(0, 23):00}:{Int(0, 59):00}";
    private string Number() => Chance(0.5) ? Int(2, 999).ToString(CultureInfo.InvariantCulture) : (Int(100, 99999) / 100.0).ToString("0.00", CultureInfo.InvariantCulture);

    private static readonly string[] Systems =
    [
        "You are a helpful assistant.", "You are a helpful travel assistant. Use the tools when they help.", "You plan trips. Use the tools.",
        "You are a concise assistant.", "You are a friendly assistant. Answer briefly.", "Use the tools when they help.",
        "You are an assistant with access to tools.", "You answer questions about the documents below. Cite the documents you use.",
        "You answer questions about the State of the Union addresses below. Cite the addresses you use.",
        "Answer from the documents.", "You are a support agent.",
    ];

    private string? System(bool tools, bool documents)
    {
        if (Chance(0.2)) return null;
        if (documents && Chance(0.6)) return Pick(Systems.Where(s => s.Contains("document", StringComparison.Ordinal) || s.Contains("addresses", StringComparison.Ordinal)).ToList());
        if (tools && Chance(0.5)) return Pick(Systems.Where(s => s.Contains("tool", StringComparison.Ordinal)).ToList());
        return Pick(Systems);
    }

    private static List<ChatMessage> Start(string? system)
    {
        var list = new List<ChatMessage>();
        if (system is not null) list.Add(new ChatMessage(ChatRole.System, system));
        return list;
    }

    // ---------------------------------------------------------------- tools

    /// <summary>A tool: its declaration, how a user asks for it, what it returns and how the answer restates that.</summary>
    private sealed record Tool(string Name, string Description, (string Name, string Type, string Description)[] Parameters,
        Func<SyntheticChat, (string Question, JsonObject Arguments)> Ask, Func<SyntheticChat, JsonObject, string> Result, Func<JsonObject, string, string> Answer);

    private static string S(JsonObject args, string key) => args[key] is JsonValue v && v.TryGetValue<string>(out var s) ? s : args[key]?.ToJsonString() ?? "";

    private static string Field(string result, string key)
    {
        try
        {
            return JsonNode.Parse(result)?[key] is JsonValue v ? (v.TryGetValue<string>(out var s) ? s : v.ToJsonString()) : "";
        }
        catch (JsonException)
        {
            return "";
        }
    }

    private static readonly Tool[] Tools = BuildTools();

    private static Tool[] BuildTools() =>
    [
        new("get_weather", "Gets the current weather for a city.", [("city", "string", "The city, e.g. Oslo")],
            g =>
            {
                string c = g.Place();
                string q = g.Pick(["What's the weather in {0}?", "What is the weather like in {0}?", "Weather in {0}?", "How is the weather in {0} today?", "Is it raining in {0}?", "Tell me the weather in {0}.", "What's the weather in {0} right now?"]);
                return (string.Format(CultureInfo.InvariantCulture, q, c), new JsonObject { ["city"] = c });
            },
            (g, a) => g.Chance(0.7)
                ? $"{{\"city\": \"{S(a, "city")}\", \"condition\": \"{g.Pick(Conditions)}\", \"temperature_c\": {g.Int(-15, 38)}}}"
                : $"{g.Pick(Conditions)}, {g.Int(-15, 38)} °C in {S(a, "city")}",
            (a, r) => r.StartsWith('{') ? $"It is {Field(r, "condition")} and {Field(r, "temperature_c")} °C in {Field(r, "city")}." : $"The weather in {S(a, "city")}: {r}."),
        new("get_local_time", "Gets the current local time in a city's time zone (IANA id, e.g. Europe/Oslo).", [("timeZone", "string", "IANA time zone id")],
            g =>
            {
                var (city, zone) = Zones.ElementAt(g._rng.Next(Zones.Count));
                string q = g.Chance(0.7)
                    ? string.Format(CultureInfo.InvariantCulture, g.Pick(["What time is it in {0}?", "What's the local time in {0}?", "What is the time in {0} now?", "Tell me the time in {0}."]), city)
                    : string.Format(CultureInfo.InvariantCulture, g.Pick(["What time is it in the {0} time zone?", "Current time in {0}?"]), zone);
                return (q, new JsonObject { ["timeZone"] = zone });
            },
            (g, a) => g.Time(),
            (a, r) => r.StartsWith("unknown", StringComparison.Ordinal) ? $"I could not find that time zone: {r}." : $"The local time in {S(a, "timeZone")} is {r}."),
        new("get_stock_price", "Gets the latest price of a stock by its ticker symbol.", [("symbol", "string", "The ticker symbol, e.g. MSFT")],
            g =>
            {
                string s = g.Code().Split('-')[0];
                return (string.Format(CultureInfo.InvariantCulture, g.Pick(["What is the stock price of {0}?", "How much is {0} trading at?", "Price of {0} shares?", "Look up the stock {0}."]), s), new JsonObject { ["symbol"] = s });
            },
            (g, a) => $"{{\"symbol\": \"{S(a, "symbol")}\", \"price\": {g.Number()}, \"currency\": \"USD\"}}",
            (a, r) => $"{Field(r, "symbol")} is trading at {Field(r, "price")} {Field(r, "currency")}."),
        new("get_population", "Gets the population of a city.", [("city", "string", "The city name")],
            g =>
            {
                string c = g.Place();
                return (string.Format(CultureInfo.InvariantCulture, g.Pick(["How many people live in {0}?", "What is the population of {0}?", "Population of {0}?"]), c), new JsonObject { ["city"] = c });
            },
            (g, a) => g.Int(2000, 9000000).ToString(CultureInfo.InvariantCulture),
            (a, r) => $"{S(a, "city")} has a population of {r}."),
        new("convert_currency", "Converts an amount of money from one currency to another.", [("amount", "number", "The amount"), ("from", "string", "Currency code, e.g. EUR"), ("to", "string", "Currency code, e.g. USD")],
            g =>
            {
                string[] cur = ["EUR", "USD", "NOK", "GBP", "JPY", "CHF", "SEK", "CAD", "AUD", "INR"];
                string f = g.Pick(cur), t = g.Pick(cur.Where(c => c != f).ToList());
                int amount = g.Int(1, 5000);
                return (string.Format(CultureInfo.InvariantCulture, g.Pick(["Convert {0} {1} to {2}.", "How much is {0} {1} in {2}?", "What is {0} {1} in {2}?"]), amount, f, t),
                    new JsonObject { ["amount"] = amount, ["from"] = f, ["to"] = t });
            },
            (g, a) => $"{{\"amount\": {g.Number()}, \"currency\": \"{S(a, "to")}\"}}",
            (a, r) => $"{S(a, "amount")} {S(a, "from")} is {Field(r, "amount")} {Field(r, "currency")}."),
        new("search_flights", "Searches flights between two cities.", [("origin", "string", "Departure city"), ("destination", "string", "Arrival city")],
            g =>
            {
                string o = g.Place(), d = g.Place();
                return (string.Format(CultureInfo.InvariantCulture, g.Pick(["Find flights from {0} to {1}.", "Are there flights from {0} to {1}?", "I need a flight from {0} to {1}."]), o, d),
                    new JsonObject { ["origin"] = o, ["destination"] = d });
            },
            (g, a) => $"{{\"flight\": \"{g.Code().Split('-')[0][..2]}{g.Int(100, 9999)}\", \"departs\": \"{g.Time()}\", \"price_eur\": {g.Int(40, 1900)}}}",
            (a, r) => $"Flight {Field(r, "flight")} from {S(a, "origin")} to {S(a, "destination")} departs {Field(r, "departs")} and costs {Field(r, "price_eur")} EUR."),
        new("get_order_status", "Gets the status of an order by its id.", [("order_id", "string", "The order id")],
            g =>
            {
                string id = g.Code() + g.Int(1, 9);
                return (string.Format(CultureInfo.InvariantCulture, g.Pick(["Where is my order {0}?", "What is the status of order {0}?", "Check order {0} for me."]), id), new JsonObject { ["order_id"] = id });
            },
            (g, a) => g.Pick(["shipped", "delivered", "in transit", "being packed", "delayed", "cancelled"]),
            (a, r) => $"Order {S(a, "order_id")} is {r}."),
        new("send_email", "Sends an email.", [("to", "string", "The recipient's address"), ("subject", "string", "The subject line")],
            g =>
            {
                string to = g.Pick(FirstNames).ToLowerInvariant() + "@" + g.Made().ToLowerInvariant() + ".com";
                string subject = g.Pick(["Meeting notes", "Invoice", "Hello", "Trip to " + g.Place(), "Project " + g.Made(), "Lunch on Friday"]);
                return (string.Format(CultureInfo.InvariantCulture, g.Pick(["Send an email to {0} with the subject \"{1}\".", "Email {0}, subject: {1}.", "Please mail {0} about \"{1}\"."]), to, subject),
                    new JsonObject { ["to"] = to, ["subject"] = subject });
            },
            (g, a) => "{\"sent\": true}",
            (a, r) => $"I sent the email \"{S(a, "subject")}\" to {S(a, "to")}."),
        new("add_numbers", "Adds two numbers.", [("a", "number", "The first number"), ("b", "number", "The second number")],
            g =>
            {
                int x = g.Int(1, 999), y = g.Int(1, 999);
                return (string.Format(CultureInfo.InvariantCulture, g.Pick(["What is {0} plus {1}?", "Add {0} and {1}.", "Compute {0} + {1}."]), x, y), new JsonObject { ["a"] = x, ["b"] = y });
            },
            (g, a) => (a["a"]!.GetValue<int>() + a["b"]!.GetValue<int>()).ToString(CultureInfo.InvariantCulture),
            (a, r) => $"{S(a, "a")} plus {S(a, "b")} is {r}."),
        new("get_news", "Gets the latest news headline about a topic.", [("topic", "string", "The topic")],
            g =>
            {
                string t = g.Chance(0.5) ? g.Pick(Topics) : g.Made();
                return (string.Format(CultureInfo.InvariantCulture, g.Pick(["What's the latest news about {0}?", "Any news on {0}?", "Give me a headline about {0}."]), t), new JsonObject { ["topic"] = t });
            },
            (g, a) => $"The {g.Pick(Topics)} of {g.Place()} {g.Pick(["reopens", "closes for repairs", "celebrates its anniversary", "wins an award"])}",
            (a, r) => $"The latest news about {S(a, "topic")}: {r}."),
        new("book_table", "Books a table at a restaurant.", [("restaurant", "string", "The restaurant's name"), ("people", "integer", "Number of guests")],
            g =>
            {
                string r = g.Pick(["The", "Café", "Chez", "La"]) + " " + g.Made();
                int p = g.Int(1, 12);
                return (string.Format(CultureInfo.InvariantCulture, g.Pick(["Book a table for {1} at {0}.", "Reserve {0} for {1} people.", "Can you get us a table at {0}? We are {1}."]), r, p), new JsonObject { ["restaurant"] = r, ["people"] = p });
            },
            (g, a) => $"{{\"confirmed\": true, \"time\": \"{g.Int(17, 22)}:{g.Pick(["00", "15", "30", "45"])}\"}}",
            (a, r) => $"Your table for {S(a, "people")} at {S(a, "restaurant")} is booked for {Field(r, "time")}."),
        new("translate", "Translates a text into another language.", [("text", "string", "The text"), ("language", "string", "The target language")],
            g =>
            {
                string text = g.Pick(["good morning", "thank you", "where is the station", "the bill, please", "see you tomorrow", "I love " + g.Pick(Topics) + "s"]);
                string lang = g.Pick(["French", "German", "Spanish", "Norwegian", "Italian", "Japanese", "Portuguese"]);
                return (string.Format(CultureInfo.InvariantCulture, g.Pick(["Translate \"{0}\" into {1}.", "How do you say \"{0}\" in {1}?"]), text, lang), new JsonObject { ["text"] = text, ["language"] = lang });
            },
            (g, a) => g.Made().ToLowerInvariant() + " " + g.Made().ToLowerInvariant(),
            (a, r) => $"In {S(a, "language")}, \"{S(a, "text")}\" is \"{r}\"."),
        new("get_distance", "Gets the distance between two cities in kilometres.", [("from", "string", "The first city"), ("to", "string", "The second city")],
            g =>
            {
                string a = g.Place(), b = g.Place();
                return (string.Format(CultureInfo.InvariantCulture, g.Pick(["How far is {0} from {1}?", "Distance from {0} to {1}?", "How many kilometres from {0} to {1}?"]), a, b), new JsonObject { ["from"] = a, ["to"] = b });
            },
            (g, a) => g.Int(3, 18000).ToString(CultureInfo.InvariantCulture) + " km",
            (a, r) => $"{S(a, "from")} is {r} from {S(a, "to")}."),
    ];

    /// <summary>A made-up tool <c>get_{thing}_{noun}</c>(<c>name</c>) with a string result.</summary>
    private Tool MadeTool()
    {
        string thing = Pick(Things), noun = Pick(Nouns);
        string param = Pick(["name", "id", thing, thing + "_id", "query"]);
        string verb = Pick(["get", "lookup", "find", "fetch", "check"]);
        string display = thing + " " + noun;
        return new Tool($"{verb}_{thing}_{noun}", $"Returns the {noun} of a {thing}.", [(param, "string", $"The {thing}'s {param.Replace('_', ' ')}")],
            g =>
            {
                string v = g.Chance(0.5) ? g.Made() : g.Code();
                string q = string.Format(CultureInfo.InvariantCulture, g.Pick(["What is the {0} of the {1} {2}?", "Find the {0} of {1} {2}.", "Check the {0} for {1} {2}.", "I need the {0} of {1} {2}."]), noun, thing, v);
                return (q, new JsonObject { [param] = v });
            },
            (g, a) => g.Chance(0.5) ? g.Number() : g.Pick(Colours) + " " + g.Made().ToLowerInvariant(),
            (a, r) => $"The {display} of {S(a, param)} is {r}.");
    }

    private AIFunctionDeclaration Declare(Tool tool, string? plugin)
    {
        var properties = new JsonObject();
        foreach (var p in tool.Parameters) properties[p.Name] = new JsonObject { ["description"] = p.Description, ["type"] = p.Type };
        var schema = new JsonObject { ["type"] = "object" };
        if (plugin is not null || Chance(0.3)) schema["description"] = tool.Description; // Semantic Kernel's schemas carry it
        schema["properties"] = properties;
        schema["required"] = new JsonArray(tool.Parameters.Select(p => (JsonNode)JsonValue.Create(p.Name)).ToArray());
        string name = plugin is null ? tool.Name : plugin + "_" + tool.Name;
        return AIFunctionFactory.CreateDeclaration(name, tool.Description, JsonSerializer.SerializeToElement(schema));
    }

    private static readonly string[] Plugins = ["Travel", "Weather", "Tools", "Shop", "Finance", "Mail", "Utils", "Assistant"];

    /// <summary>1–4 offered tools including <paramref name="needed"/>, each declared with or without a plugin prefix.</summary>
    private (List<AIFunctionDeclaration> Declarations, Dictionary<Tool, string> Names) Offer(params Tool[] needed)
    {
        var tools = new List<Tool>(needed);
        int extra = Int(0, 2);
        for (int i = 0; i < extra; i++)
        {
            var t = Chance(0.8) ? Tools[_rng.Next(Tools.Length)] : MadeTool();
            if (!tools.Any(x => x.Name == t.Name)) tools.Insert(_rng.Next(tools.Count + 1), t);
        }
        string? plugin = Chance(0.5) ? Pick(Plugins) : null;
        var names = new Dictionary<Tool, string>();
        var declarations = new List<AIFunctionDeclaration>();
        foreach (var t in tools)
        {
            var d = Declare(t, plugin);
            declarations.Add(d);
            names[t] = d.Name;
        }
        return (declarations, names);
    }

    private Tool AnyTool() => Chance(0.75) ? Tools[_rng.Next(Tools.Length)] : MadeTool();

    private static string CallText(string name, JsonObject args) => name + "(" + args.ToJsonString() + ")";

    /// <summary>The user asks one or two things the offered tools answer; the assistant's turn is the tool call(s).</summary>
    private (List<ChatMessage> Messages, ChatOptions Options, List<(Tool Tool, string Name, JsonObject Args, string Id)> Calls) ToolRequest()
    {
        var first = AnyTool();
        Tool? second = Chance(0.25) ? AnyTool() : null;
        if (second is not null && second.Name == first.Name) second = null;
        var (declarations, names) = second is null ? Offer(first) : Offer(first, second);
        var options = new ChatOptions { Tools = [.. declarations] };
        var messages = Start(System(tools: true, documents: false));
        if (Chance(0.15)) AddSmallTalk(messages);
        var (q1, a1) = first.Ask(this);
        var calls = new List<(Tool, string, JsonObject, string)> { (first, names[first], a1, "call_" + _rng.Next(1_000_000).ToString(CultureInfo.InvariantCulture)) };
        string question = q1;
        if (second is not null)
        {
            var (q2, a2) = second.Ask(this);
            question = q1.TrimEnd('?', '.') + Pick([", and ", "; also, ", ". And "]) + char.ToLowerInvariant(q2[0]) + q2[1..];
            calls.Add((second, names[second], a2, "call_" + _rng.Next(1_000_000).ToString(CultureInfo.InvariantCulture)));
        }
        messages.Add(new ChatMessage(ChatRole.User, question));
        messages.Add(new ChatMessage(ChatRole.Assistant, [.. calls.Select(c => (AIContent)new FunctionCallContent(c.Item4, c.Item2, ToDictionary(c.Item3)))]));
        return (messages, options, calls);
    }

    private static Dictionary<string, object?> ToDictionary(JsonObject args) =>
        args.ToDictionary(kv => kv.Key, kv => (object?)(kv.Value is JsonValue v && v.TryGetValue<string>(out var s) ? s : kv.Value is JsonValue n && n.TryGetValue<int>(out var i) ? i : kv.Value?.DeepClone()));

    private SyntheticConversation ToolCall()
    {
        var (messages, options, calls) = ToolRequest();
        return new("tool_call", messages, options, string.Join("\n", calls.Select(c => CallText(c.Name, c.Args))));
    }

    private SyntheticConversation ToolAnswer()
    {
        var (messages, options, calls) = ToolRequest();
        var answers = new List<string>();
        foreach (var c in calls)
        {
            string result = c.Tool.Result(this, c.Args);
            messages.Add(new ChatMessage(ChatRole.Tool, [new FunctionResultContent(c.Id, result)]));
            answers.Add(c.Tool.Answer(c.Args, result));
        }
        string answer = string.Join(" ", answers);
        messages.Add(new ChatMessage(ChatRole.Assistant, answer));
        return new("tool_answer", messages, options, answer);
    }

    // ---------------------------------------------------------------- plain chat

    private (string User, string Assistant) SmallTalk()
    {
        switch (_rng.Next(9))
        {
            case 0: return (Pick(["Hello!", "Hi", "Hi there!", "Good morning.", "Hey!", "Hello"]), Pick(["Hello! How can I help you today?", "Hi! What can I do for you?"]));
            case 1: return (Pick(["Thanks!", "Thank you.", "Great, thanks.", "Perfect, thank you!"]), "You're welcome!");
            case 2: return (Pick(["Who are you?", "What are you?", "What is your name?"]), "I am a small Jamba model. I can chat, call tools and answer questions from documents.");
            case 3:
            {
                string w = Chance(0.5) ? Made() : Person();
                return (string.Format(CultureInfo.InvariantCulture, Pick(["Say {0}.", "Repeat after me: {0}", "Please say \"{0}\"."]), w), w);
            }
            case 4:
            {
                string name = Pick(FirstNames);
                return (string.Format(CultureInfo.InvariantCulture, Pick(["My name is {0}.", "I'm {0}.", "Call me {0}."]), name), $"Nice to meet you, {name}!");
            }
            case 5: return (Pick(["Can you help me?", "I have a question.", "Can I ask you something?"]), "Of course. What would you like to know?");
            case 6: return (Pick(["Goodbye!", "Bye.", "See you later."]), "Goodbye! Have a nice day.");
            case 7:
            {
                string city = Place();
                return ($"I am travelling to {city} next week.", $"That sounds great! Enjoy your trip to {city}.");
            }
            default:
            {
                int a = Int(1, 9), b = Int(1, 9);
                return ($"What is {a} plus {b}?", $"{a} plus {b} is {a + b}.");
            }
        }
    }

    private void AddSmallTalk(List<ChatMessage> messages)
    {
        var (u, a) = SmallTalk();
        messages.Add(new ChatMessage(ChatRole.User, u));
        messages.Add(new ChatMessage(ChatRole.Assistant, a));
    }

    private SyntheticConversation Chat()
    {
        bool tools = Chance(0.4);
        var options = new ChatOptions();
        if (tools) options.Tools = [.. Offer(AnyTool()).Declarations];
        var messages = Start(System(tools, documents: false));
        if (Chance(0.3)) AddSmallTalk(messages);
        AddSmallTalk(messages);
        return new("chat", messages, options, messages[^1].Text);
    }

    // ---------------------------------------------------------------- copy drills

    /// <summary>A span to copy: 1–6 items (made-up words, names, codes, cities, numbers) or a run of words of the prose.</summary>
    private string CopySpan()
    {
        if (_prose.Count > 0 && Chance(0.3))
        {
            var words = Words(_prose[_rng.Next(_prose.Count)]);
            int n = Math.Min(words.Count, Int(2, 9));
            int at = _rng.Next(words.Count - n + 1);
            return string.Join(" ", words.Skip(at).Take(n));
        }
        int items = Int(1, 6);
        var parts = new List<string>(items);
        for (int i = 0; i < items; i++)
        {
            parts.Add(_rng.Next(6) switch
            {
                0 => Made(),
                1 => Person(),
                2 => Code(),
                3 => Pick(Cities),
                4 => Number(),
                _ => Made().ToLowerInvariant(),
            });
        }
        return string.Join(" ", parts);
    }

    private SyntheticConversation CopyDrill()
    {
        var messages = Start(Chance(0.7) ? null : Pick(Systems));
        string span = CopySpan(), user, answer;
        switch (_rng.Next(5))
        {
            case 0:
                user = string.Format(CultureInfo.InvariantCulture, Pick(["Repeat after me: {0}", "Say {0}.", "Please say \"{0}\".", "Echo this: {0}"]), span);
                answer = span;
                break;
            case 1:
            {
                string before = CopySpan(), after = CopySpan();
                user = $"Which words are in quotes here: {before} \"{span}\" {after}?";
                answer = $"\"{span}\"";
                break;
            }
            case 2:
            {
                string name = Person();
                user = string.Format(CultureInfo.InvariantCulture, Pick(["My name is {0}.", "I'm {0}.", "Call me {0}."]), name);
                answer = $"Nice to meet you, {name}!";
                break;
            }
            case 3:
            {
                string city = Place();
                user = $"{Pick(["I live in", "I am travelling to", "My friend is in", "Tomorrow I fly to"])} {city}. Which city did I name?";
                answer = $"You named {city}.";
                break;
            }
            default:
            {
                string key = Pick(["code", "word", "name", "id", "password", "value"]);
                user = $"The {key} is {span}. What is the {key}?";
                answer = $"The {key} is {span}.";
                break;
            }
        }
        messages.Add(new ChatMessage(ChatRole.User, user));
        messages.Add(new ChatMessage(ChatRole.Assistant, answer));
        return new("copy", messages, new ChatOptions(), answer);
    }

    // ---------------------------------------------------------------- documents

    private static readonly HashSet<string> StopWords = new(StringComparer.OrdinalIgnoreCase)
    {
        "the", "and", "that", "this", "with", "from", "have", "were", "which", "there", "their", "these", "those", "what", "when",
        "where", "would", "could", "should", "about", "into", "been", "they", "them", "then", "than", "some", "such", "upon",
        "over", "only", "very", "will", "shall", "must", "more", "most", "other", "your", "yours", "ours", "ourselves", "while",
        "because", "though", "after", "before", "again", "every", "being", "himself", "herself", "itself", "said", "like", "also",
    };

    /// <summary>Sentences of a paragraph (split after ". ", "! ", "? ").</summary>
    internal static List<string> SplitSentences(string text)
    {
        var list = new List<string>();
        int start = 0;
        for (int i = 0; i < text.Length - 1; i++)
        {
            if (text[i] is '.' or '!' or '?' && text[i + 1] == ' ')
            {
                list.Add(text[start..(i + 1)].Trim());
                start = i + 2;
            }
        }
        if (start < text.Length) list.Add(text[start..].Trim());
        return list.Where(s => s.Length > 0).ToList();
    }

    private string MadeFactSentence(string subject)
    {
        string topic = Pick(Topics), other = Made();
        return _rng.Next(10) switch
        {
            0 => $"{subject} is a small town on the coast of {other}, known for its {topic}.",
            1 => $"The {topic} of {subject} was built in {Int(1200, 2020)} by {Person()}.",
            2 => $"In {Int(1700, 2024)}, {subject} signed a treaty with {other} about {Pick(Topics)}s and trade.",
            3 => $"{Person()} founded the {topic} of {subject} with {Int(2, 90)} friends.",
            4 => $"Every spring {subject} holds a {Pick(Colours)} {topic} festival that lasts {Int(2, 14)} days.",
            5 => $"The people of {subject} export {Pick(Colours)} {Pick(Things)}s to {Place()}.",
            6 => $"{subject} has {Int(3, 900)} {topic}s and a population of {Int(500, 900000)}.",
            7 => $"Visitors to {subject} should try the {Pick(Colours)} {other.ToLowerInvariant()} soup.",
            8 => $"A storm destroyed the old {topic} of {subject} in {Int(1800, 2023)}.",
            _ => $"The mayor of {subject}, {Person()}, promised a new {topic} by {Int(2025, 2040)}.",
        };
    }

    private JambaDocument MakeDocument(out List<string> sentences)
    {
        string text;
        string? title;
        if (_prose.Count > 0 && Chance(0.55))
        {
            text = _prose[_rng.Next(_prose.Count)];
            title = Pick(["Chapter " + Int(1, 135).ToString(CultureInfo.InvariantCulture), "Moby-Dick, an excerpt", "Notes " + Int(1, 99).ToString(CultureInfo.InvariantCulture), "A passage", "Letter from " + Person()]);
        }
        else
        {
            string subject = Made();
            var parts = new List<string>();
            int n = Int(2, 7);
            for (int i = 0; i < n; i++) parts.Add(MadeFactSentence(Chance(0.6) ? subject : Made()));
            text = string.Join(" ", parts);
            title = Pick([$"About {subject}", $"{subject}", $"The history of {subject}", $"Guide to {subject}", $"Report {Int(1, 500)}"]);
        }
        if (Chance(0.15)) title = null;
        var doc = new JambaDocument(text, title, Chance(0.3) ? "doc" + Int(1, 999).ToString(CultureInfo.InvariantCulture) : null);
        if (Chance(0.3))
        {
            int year = Int(1790, 2024);
            doc = doc with { Title = $"State of the Union {year} ({Person()})", Fields = new Dictionary<string, object?> { ["year"] = year, ["president"] = Person(), ["party"] = Pick(["Democratic", "Republican", "Whig", "Federalist"]) } };
        }
        sentences = SplitSentences(text);
        return doc;
    }

    private static List<string> Words(string s) => s.Split(' ', StringSplitOptions.RemoveEmptyEntries).ToList();

    private static string Clean(string w) => w.Trim('"', '“', '”', '‘', '’', '\'', ',', '.', ';', ':', '!', '?', '(', ')', '—', '-');

    private SyntheticConversation Document()
    {
        int count = Int(1, 3);
        var docs = new List<JambaDocument>();
        var sentenceLists = new List<List<string>>();
        for (int i = 0; i < count; i++)
        {
            docs.Add(MakeDocument(out var s));
            sentenceLists.Add(s);
        }
        string allText = string.Join("\n", docs.Select(d => d.Text));
        bool citations = Chance(0.6);
        var options = new ChatOptions().WithDocuments(docs);
        if (citations) options = options.WithCitations();
        var messages = Start(System(tools: false, documents: true));

        // The key phrase: one or two words that occur once in all the documents, early enough in their sentence.
        string? key = null;
        int docIndex = -1;
        string quote = "";
        for (int attempt = 0; attempt < 40 && key is null; attempt++)
        {
            int d = _rng.Next(count);
            var sentences = sentenceLists[d];
            string sentence = sentences[_rng.Next(sentences.Count)];
            var words = Words(sentence);
            if (words.Count < 5) continue;
            int at = _rng.Next(Math.Max(1, Math.Min(words.Count - 4, words.Count / 2 + 1)));
            string w = Clean(words[at]);
            if (w.Length < 4 || StopWords.Contains(w) || !w.All(c => char.IsLetterOrDigit(c) || c is '-' or '\'')) continue;
            string phrase = w;
            if (Chance(0.3) && at + 1 < words.Count && Clean(words[at + 1]) is { Length: >= 3 } next && Clean(words[at + 1]) == words[at + 1] && words[at] == w) phrase = w + " " + next;
            if (Occurrences(allText, phrase) != 1) continue;
            int start = sentence.IndexOf(phrase, StringComparison.Ordinal);
            if (start < 0) continue;
            var span = Words(sentence[start..]);
            if (span.Count < 4) continue;
            quote = string.Join(" ", span.Take(18));
            if (span.Count > 18) quote += " …";
            key = phrase;
            docIndex = d;
        }
        if (key is null || Chance(0.08))
        {
            // Nothing in the documents is about the question.
            string missing = Chance(0.5) ? Made() : Pick(Topics) + "s of " + Made();
            messages.Add(new ChatMessage(ChatRole.User, Question(missing)));
            var none = new ChatMessage(ChatRole.Assistant, $"The documents do not mention {missing}.");
            if (citations) none.AdditionalProperties = new() { [JambaCitations.AdditionalPropertiesKey] = new List<int>() };
            messages.Add(none);
            return new("document", messages, options, none.Text);
        }
        messages.Add(new ChatMessage(ChatRole.User, Question(key)));
        string body = quote.EndsWith('…') ? quote[..^2] : quote;
        var answer = new ChatMessage(ChatRole.Assistant, $"The document says: \"{quote}\"");
        if (citations) answer.AdditionalProperties = new() { [JambaCitations.AdditionalPropertiesKey] = new List<int> { docIndex } };
        messages.Add(answer);
        return new("document", messages, options, body);
    }

    private string Question(string key) => string.Format(CultureInfo.InvariantCulture, Pick(
    [
        "What does the document say about {0}?", "What do the documents say about {0}?", "Tell me about {0}.", "What is said about {0}?",
        "Which document mentions {0}?", "Quote the part about {0}.", "What did the addresses say about {0}?", "Which address first mentions {0}?",
        "Which president talked the most about {0}, and in which year?", "Summarise what the presidents proposed about {0}.",
        "What does the text say about {0}?", "Find {0} in the documents.", "Is {0} mentioned?", "What happened with {0}?",
        "Summarise what is said about {0}.", "According to the documents, what about {0}?",
    ]), key);

    private static int Occurrences(string text, string phrase)
    {
        int n = 0;
        for (int i = text.IndexOf(phrase, StringComparison.OrdinalIgnoreCase); i >= 0; i = text.IndexOf(phrase, i + 1, StringComparison.OrdinalIgnoreCase)) n++;
        return n;
    }

    // ---------------------------------------------------------------- JSON

    private SyntheticConversation Json()
    {
        var options = new ChatOptions { ResponseFormat = ChatResponseFormat.Json };
        var messages = Start(Chance(0.5) ? null : Pick(["You are a helpful assistant.", "You extract data as JSON.", "Answer in JSON."]));
        string user, json;
        switch (_rng.Next(4))
        {
            case 0:
            {
                string name = Person(), city = Place();
                int age = Int(18, 90);
                user = string.Format(CultureInfo.InvariantCulture, Pick(["Extract the name, age and city as JSON: {0} is {1} years old and lives in {2}.", "Give me JSON with name, age and city. {0}, {1}, from {2}."]), name, age, city);
                json = $"{{\"name\": \"{name}\", \"age\": {age}, \"city\": \"{city}\"}}";
                break;
            }
            case 1:
            {
                string city = Place();
                string cond = Pick(Conditions);
                int t = Int(-10, 35);
                user = $"Return the weather report as JSON with city, condition and temperature_c: in {city} it is {cond} and {t} degrees.";
                json = $"{{\"city\": \"{city}\", \"condition\": \"{cond}\", \"temperature_c\": {t}}}";
                break;
            }
            case 2:
            {
                string item = Pick(Things);
                int qty = Int(1, 50);
                string price = Number();
                user = $"As JSON (item, quantity, price): {qty} {item}s at {price} each.";
                json = $"{{\"item\": \"{item}\", \"quantity\": {qty}, \"price\": {price}}}";
                break;
            }
            default:
            {
                var list = Enumerable.Range(0, Int(2, 4)).Select(_ => Place()).Distinct().ToList();
                user = $"List these cities as a JSON array under \"cities\": {string.Join(", ", list)}.";
                json = "{\"cities\": [" + string.Join(", ", list.Select(c => "\"" + c + "\"")) + "]}";
                break;
            }
        }
        messages.Add(new ChatMessage(ChatRole.User, user));
        messages.Add(new ChatMessage(ChatRole.Assistant, json));
        return new("json", messages, options, json);
    }
}
