using Storage.Metadata;

namespace Storage.Daemon;

/// <summary>Decodes one stored record.</summary>
internal delegate T RecordDecoder<out T>(ReadOnlySpan<byte> data);

/// <summary>Reads of the catalogue the daemon makes often.</summary>
internal static class Catalogue
{
    /// <summary>Every record under <paramref name="prefix"/> with its version, decoded, in key order (one deleted meanwhile is left out).</summary>
    public static async Task<IReadOnlyList<(string Key, long Version, T Record)>> ReadAllAsync<T>(this IMetadataStore store, string prefix, RecordDecoder<T> decode,
        CancellationToken cancellationToken = default)
    {
        var records = new List<(string, long, T)>();
        foreach (var key in await store.ListAsync(prefix, cancellationToken).ConfigureAwait(false))
        {
            var read = await store.ReadAsync(key.Key, cancellationToken).ConfigureAwait(false);
            if (read.IsOk)
                records.Add((key.Key, read.Version, decode(read.Value.Span)));
        }
        return records;
    }
}
