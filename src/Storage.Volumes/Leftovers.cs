using System.Globalization;
using System.Text;
using Storage.Metadata;
using Storage.Versioning;

namespace Storage.Volumes;

/// <summary>
/// Old copies left on a pool that did not answer when they were replaced (<see cref="VolumeTransactions.ReplaceStaleCopyAsync"/>):
/// one catalogue key per segment, <c>leftovers/POOL/SEGMENT</c>, holding the volume and segment index. The node that
/// opens the pool deletes them (<see cref="CollectAsync"/>) before the pool takes part in anything.
/// </summary>
public static class Leftovers
{
    /// <summary>Where the leftovers of every pool are listed.</summary>
    public const string Prefix = "leftovers/";

    /// <summary>The record of segment <paramref name="segment"/> left on pool <paramref name="pool"/>.</summary>
    public static string Key(string pool, string segment) => $"{Prefix}{pool}/{segment}";

    /// <summary>A record's value: the volume and the index of the segment.</summary>
    public static byte[] Encode(string volume, int index) => Encoding.UTF8.GetBytes(string.Create(CultureInfo.InvariantCulture, $"{volume}\n{index}"));

    /// <summary>The volume and segment index of a record's value.</summary>
    /// <exception cref="FormatException">Not such a value.</exception>
    public static (string Volume, int Index) Decode(ReadOnlySpan<byte> value)
    {
        string text = Encoding.UTF8.GetString(value);
        int split = text.LastIndexOf('\n');
        return split > 0 && int.TryParse(text.AsSpan(split + 1), NumberStyles.None, CultureInfo.InvariantCulture, out int index)
            ? (text[..split], index)
            : throw new FormatException($"'{text}' is not a leftover record (VOLUME\\nINDEX).");
    }

    /// <summary>
    /// Deletes from <paramref name="pool"/> (named <paramref name="name"/> in the catalogue, open here) the old copies
    /// listed as left on it, unless the catalogue places that segment there again, and drops their records. Returns
    /// the segments deleted.
    /// </summary>
    public static async Task<IReadOnlyList<string>> CollectAsync(IMetadataStore store, string name, Pool pool, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(store);
        ArgumentNullException.ThrowIfNull(pool);
        var deleted = new List<string>();
        foreach (var key in await store.ListAsync(Key(name, ""), cancellationToken).ConfigureAwait(false))
        {
            var read = await store.ReadAsync(key.Key, cancellationToken).ConfigureAwait(false);
            if (!read.IsOk)
                continue;
            var (volumeName, index) = Decode(read.Value.Span);
            string segment = key.Key[Key(name, "").Length..];
            var record = await store.ReadAsync(SpannedVolume.Key(volumeName), cancellationToken).ConfigureAwait(false);
            bool placedAgain = record.IsOk && SpannedVolume.Decode(record.Value.Span) is var volume
                && index < volume.Segments.Count && volume.Segments[index].Contains(name, StringComparer.Ordinal);
            if (!placedAgain && pool.ListVolumes().Any(v => v.Name == segment))
            {
                await pool.DeleteVolumeAsync(segment, cancellationToken).ConfigureAwait(false);
                deleted.Add(segment);
            }
            var dropped = await store.ExecuteAsync(new DeleteCommand(key.Key, read.Version), cancellationToken).ConfigureAwait(false);
            if (!dropped.IsOk && dropped.Code != ResultCode.NotFound)
                throw new VolumeException($"The metadata service kept the leftover record {key.Key}: {dropped.Message}");
        }
        return deleted;
    }
}
