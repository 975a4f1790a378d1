using System.Globalization;
using System.Net;
using Storage.Metadata;

namespace Storage.EtcdLoad;

/// <summary>
/// <c>storage meta serve</c> replicas through <see cref="MetadataClient"/> (one multiplexed TCP connection
/// to the leader), the client <c>storage meta bench</c> uses. Reads are linearizable (the leader answers
/// under its lease, else through the log).
/// </summary>
internal sealed class MetaTarget : ILoadTarget
{
    private readonly MetadataClient _client;
    private readonly byte[] _value;

    public MetaTarget(string[] endpoints, int valueBytes)
    {
        var map = new Dictionary<int, IPEndPoint>();
        foreach (string part in endpoints)
        {
            string[] kv = part.Split('=', 2);
            if (kv.Length != 2 || !int.TryParse(kv[0], NumberStyles.Integer, CultureInfo.InvariantCulture, out int id)
                || !IPEndPoint.TryParse(kv[1], out var endpoint))
                throw new FormatException($"bad meta endpoint '{part}' (want ID=HOST:PORT)");
            map[id] = endpoint;
        }
        _client = new MetadataClient(map);
        _value = new byte[valueBytes];
        Random.Shared.NextBytes(_value);
    }

    private static string Key(int key) => string.Create(CultureInfo.InvariantCulture, $"bench/{key:D10}");

    /// <inheritdoc/>
    public async Task PutAsync(int key, CancellationToken cancellationToken)
    {
        var r = await _client.ExecuteAsync(new PutCommand(Key(key), _value), cancellationToken).ConfigureAwait(false);
        if (!r.IsOk)
            throw new LoadRequestException($"meta put: {r.Code} {r.Message}");
    }

    /// <inheritdoc/>
    public async Task GetAsync(int key, CancellationToken cancellationToken)
    {
        var r = await _client.ReadAsync(Key(key), cancellationToken).ConfigureAwait(false);
        if (!r.IsOk)
            throw new LoadRequestException($"meta get: {r.Code} {r.Message} (run with --prefill)");
    }

    /// <inheritdoc/>
    public string Describe() => "meta";

    /// <inheritdoc/>
    public ValueTask DisposeAsync()
    {
        _client.Dispose();
        return ValueTask.CompletedTask;
    }
}
