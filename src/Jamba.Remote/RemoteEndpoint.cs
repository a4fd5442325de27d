namespace Jamba.Remote;

/// <summary>Normalises the address of an OpenAI-compatible server.</summary>
public static class RemoteEndpoint
{
    /// <summary>
    /// The API root of <paramref name="endpoint"/>: <c>http://host:8000</c>, <c>http://host:8000/</c> and
    /// <c>http://host:8000/v1</c> all give <c>http://host:8000/v1/</c> (a path other than <c>/v1</c> is kept and
    /// <c>v1</c> is not added when it already ends the path).
    /// </summary>
    /// <exception cref="ArgumentException">Not an absolute http(s) address.</exception>
    public static Uri ApiRoot(Uri endpoint)
    {
        ArgumentNullException.ThrowIfNull(endpoint);
        if (!endpoint.IsAbsoluteUri || endpoint.Scheme is not ("http" or "https"))
            throw new ArgumentException($"The endpoint must be an absolute http or https address (e.g. http://localhost:8000/v1); found '{endpoint}'.", nameof(endpoint));
        string path = endpoint.AbsolutePath.TrimEnd('/');
        if (!path.EndsWith("/v1", StringComparison.Ordinal)) path += "/v1";
        return new UriBuilder(endpoint) { Path = path + "/", Query = "", Fragment = "" }.Uri;
    }
}
