using System.Globalization;
using System.Net;
using System.Net.Http.Headers;
using System.Text;
using System.Text.Json;

namespace Storage.EtcdLoad;

/// <summary>
/// etcd through its v3 JSON gateway (grpc-gateway on the client port, etcd 3.4): <c>POST /v3/kv/put</c> and
/// <c>POST /v3/kv/range</c> with base64 keys and values, over keep-alive HTTP/1.1 connections, one per
/// request in flight. Every request goes to the leader, as <c>storage meta bench</c>'s do. This path costs
/// HTTP parsing and JSON (un)marshalling on both sides that etcd's gRPC clients do not pay.
/// </summary>
internal sealed class EtcdGateway : ILoadTarget
{
    private static readonly MediaTypeHeaderValue Json = new("application/json");
    private readonly HttpClient _http;
    private readonly Uri _put;
    private readonly Uri _range;
    private readonly string _valueBase64;
    private readonly Uri _leader;

    private EtcdGateway(HttpClient http, Uri leader, int valueBytes)
    {
        _http = http;
        _leader = leader;
        _put = new Uri(leader, "v3/kv/put");
        _range = new Uri(leader, "v3/kv/range");
        var value = new byte[valueBytes];
        Random.Shared.NextBytes(value);
        _valueBase64 = Convert.ToBase64String(value);
    }

    /// <summary>Finds the leader among <paramref name="endpoints"/> and opens a client for it.</summary>
    public static async Task<EtcdGateway> ConnectAsync(string[] endpoints, int inflight, int valueBytes, CancellationToken cancellationToken)
    {
        var handler = new SocketsHttpHandler
        {
            MaxConnectionsPerServer = inflight,
            UseProxy = false,
            UseCookies = false,
            AutomaticDecompression = DecompressionMethods.None,
            PooledConnectionIdleTimeout = TimeSpan.FromMinutes(5),
            PooledConnectionLifetime = Timeout.InfiniteTimeSpan,
        };
        var http = new HttpClient(handler) { Timeout = TimeSpan.FromSeconds(30) };
        try
        {
            var leader = await FindLeaderAsync(http, endpoints, cancellationToken).ConfigureAwait(false);
            return new EtcdGateway(http, leader, valueBytes);
        }
        catch
        {
            http.Dispose();
            throw;
        }
    }

    private static async Task<Uri> FindLeaderAsync(HttpClient http, string[] endpoints, CancellationToken cancellationToken)
    {
        var deadline = DateTime.UtcNow + TimeSpan.FromSeconds(15);
        string last = "no answer";
        while (DateTime.UtcNow < deadline)
        {
            foreach (string endpoint in endpoints)
            {
                var uri = new Uri(endpoint.EndsWith('/') ? endpoint : endpoint + "/");
                try
                {
                    using var content = new StringContent("{}", Encoding.UTF8, Json);
                    using var response = await http.PostAsync(new Uri(uri, "v3/maintenance/status"), content, cancellationToken).ConfigureAwait(false);
                    string body = await response.Content.ReadAsStringAsync(cancellationToken).ConfigureAwait(false);
                    if (!response.IsSuccessStatusCode)
                    {
                        last = $"{endpoint}: HTTP {(int)response.StatusCode} {body}";
                        continue;
                    }
                    using var doc = JsonDocument.Parse(body);
                    // uint64 fields come back as JSON strings from grpc-gateway.
                    string self = Text(doc.RootElement.GetProperty("header").GetProperty("member_id"));
                    if (doc.RootElement.TryGetProperty("leader", out var leader) && Text(leader) == self)
                        return uri;
                    last = $"{endpoint} is not the leader";
                }
                catch (HttpRequestException e)
                {
                    last = $"{endpoint}: {e.Message}";
                }
            }
            await Task.Delay(200, cancellationToken).ConfigureAwait(false);
        }
        throw new LoadRequestException($"no etcd leader found ({last})");
    }

    private static string Text(JsonElement e) => e.ValueKind == JsonValueKind.String ? e.GetString() ?? "" : e.GetRawText();

    private static string KeyBase64(int key)
    {
        Span<byte> k = stackalloc byte[16];
        "bench/"u8.CopyTo(k);
        key.TryFormat(k[6..], out _, "D10", CultureInfo.InvariantCulture);
        return Convert.ToBase64String(k);
    }

    /// <inheritdoc/>
    public async Task PutAsync(int key, CancellationToken cancellationToken)
    {
        byte[] body = Encoding.ASCII.GetBytes($$"""{"key":"{{KeyBase64(key)}}","value":"{{_valueBase64}}"}""");
        await PostAsync(_put, body, needValue: false, cancellationToken).ConfigureAwait(false);
    }

    /// <inheritdoc/>
    public async Task GetAsync(int key, CancellationToken cancellationToken)
    {
        // serializable defaults to false: a linearizable read (ReadIndex through the leader).
        byte[] body = Encoding.ASCII.GetBytes($$"""{"key":"{{KeyBase64(key)}}"}""");
        await PostAsync(_range, body, needValue: true, cancellationToken).ConfigureAwait(false);
    }

    private async Task PostAsync(Uri path, byte[] body, bool needValue, CancellationToken cancellationToken)
    {
        using var content = new ByteArrayContent(body);
        content.Headers.ContentType = Json;
        using var response = await _http.PostAsync(path, content, cancellationToken).ConfigureAwait(false);
        byte[] answer = await response.Content.ReadAsByteArrayAsync(cancellationToken).ConfigureAwait(false);
        if (!response.IsSuccessStatusCode)
            throw new LoadRequestException($"etcd {path}: HTTP {(int)response.StatusCode} {Encoding.UTF8.GetString(answer)}");
        if (needValue && answer.AsSpan().IndexOf("\"kvs\""u8) < 0)
            throw new LoadRequestException($"etcd {path}: key not found (run with --prefill): {Encoding.UTF8.GetString(answer)}");
    }

    /// <inheritdoc/>
    public string Describe() => _leader.ToString();

    /// <inheritdoc/>
    public ValueTask DisposeAsync()
    {
        _http.Dispose();
        return ValueTask.CompletedTask;
    }
}
